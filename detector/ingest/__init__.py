"""The hot path: assignments read in batches, run through the engine, checkpointed with offsets."""

"""Flag configurations (flagd, GrowthBook, Unleash) read into configured exposure, judged against registrations.

`model` holds the typed result, one reader module per format turns a document into it, `rule`
compares it with a registration (`config_exceeds_declaration`), and `watcher` is the shell that
polls, reads pushed documents and feeds findings to the alert lifecycle.
"""

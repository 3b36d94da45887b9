"""Registration: the declared population of an experiment, and its one home.

A registration enters the system as YAML (`DETECTOR_EXPECTATIONS_DIR`, `detector sync`), via the
CLI (`detector register`) or the API (`PUT /v1/expectations/{experiment}`); all of them go through
`parse_registration`, so they accept and reject exactly the same documents.

    compiled.py the engine's compiled, immutable view (CompiledRegistration)
    model.py    the pydantic model (the source of validation, JSON Schema, OpenAPI), compile, canonical form
    errors.py   pydantic errors -> FieldError messages with paths and "did you mean" hints
    schema.py   the generated JSON Schema (config/expectation.schema.json)
    files.py    YAML files and directories
    records.py  the record on the topic exposure.expectations (decode and validate once)
    store.py    the table fold, the parsed cache, the Kafka-backed services
    service.py  the RegistrationService protocol and an in-memory implementation
    risk.py     which changes need an explicit confirmation; diffs
    sync.py     GitOps: a directory applied to a service (risks reported, prune explicit)
    cli.py      detector register | sync | registrations
"""

from detector.registration.compiled import CompiledRegistration, Flag
from detector.registration.errors import FieldError, RegistrationError
from detector.registration.files import load_dir, load_file, load_path, load_yaml_documents
from detector.registration.model import Registration, parse_registration, registration_to_dict
from detector.registration.risk import Risk, assess, diff
from detector.registration.service import InMemoryRegistrationService, RegistrationService

__all__ = [
    "CompiledRegistration",
    "FieldError",
    "Flag",
    "InMemoryRegistrationService",
    "Registration",
    "RegistrationError",
    "RegistrationService",
    "Risk",
    "assess",
    "diff",
    "load_dir",
    "load_file",
    "load_path",
    "load_yaml_documents",
    "parse_registration",
    "registration_to_dict",
]

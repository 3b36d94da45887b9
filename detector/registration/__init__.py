"""Registration of expected exposure: validation, risk checks, service protocol, CLI.

Every way a registration enters the system (YAML files under `DETECTOR_EXPECTATIONS_DIR`,
`detector register`/`detector sync`, `PUT /v1/expectations/{experiment}`) goes through
`parse_expectation`, so they all accept and reject exactly the same documents.
"""

from detector.registration.model import (
    FieldError,
    RegistrationError,
    expectation_to_dict,
    load_dir,
    load_file,
    load_path,
    load_yaml_documents,
    parse_expectation,
)
from detector.registration.risk import Risk, assess, diff
from detector.registration.service import InMemoryRegistrationService, RegistrationService

__all__ = [
    "FieldError",
    "InMemoryRegistrationService",
    "RegistrationService",
    "RegistrationError",
    "Risk",
    "assess",
    "diff",
    "expectation_to_dict",
    "load_dir",
    "load_file",
    "load_path",
    "load_yaml_documents",
    "parse_expectation",
]

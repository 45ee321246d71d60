"""Input-error types of the avas scripts (each is a common.errors.InputError: one line, exit 2)."""
from common.errors import InputError


class DataFormatError(InputError, ValueError):
    """A malformed line of an input file (the message names file:line)."""


class MissingFileError(InputError, FileNotFoundError):
    """An input file or folder that is not there (the message says where it comes from)."""

"""LHSC's input error: a common.errors.InputError that older callers can also catch as SystemExit."""
from common.errors import InputError


class LhscInputError(InputError, SystemExit):
    """Bad input (file, flag, checkpoint); the message names it and says what to do.

    It is an InputError, so `common.errors.cli_main` prints it as one `error:` line (exit 2); it is
    also a SystemExit (with the message as exit code, so exit status 1 when uncaught) because the
    port raised SystemExit for these faults before and callers and tests catch that."""

    def __init__(self, message):
        super().__init__(message)
        self.code = str(message)

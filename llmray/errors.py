"""Errors that the command line turns into one clear line and exit status 2."""


class UserError(Exception):
    """Something the user must fix (a job file, a path, an argument). The message says what."""


class JobError(UserError):
    """A job file is invalid. The message names the key and its place in the file."""

"""Errors that the command line turns into one clear line and exit status 2."""


class UserError(Exception):
    """Something the user must fix (a job file, a path, an argument). The message says what."""


class JobError(UserError):
    """A job file is invalid. The message names the key and its place in the file."""


def check_keys(mapping: dict, allowed: set[str] | list[str], where: str) -> None:
    """Refuse unknown keys, naming the first one, its place, and what is allowed."""
    if not isinstance(mapping, dict):
        raise JobError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    for key in mapping:
        if key not in allowed:
            raise JobError(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")

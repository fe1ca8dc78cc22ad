"""The one error type for problems the user can fix: reported as one line naming the file and the problem."""
from __future__ import annotations


class UserError(Exception):
    """Bad input (missing file, foreign checkpoint, empty folder...): reported as one line, never a traceback."""

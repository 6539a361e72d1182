"""The error of a `/card` text that is not a valid command, shared by the parser's parts."""

from __future__ import annotations

HELP_POINTER = "Type `/card help` to see every command with an example."


class CommandError(ValueError):
    """Text that is not a valid command. `message` is safe to show: it never echoes input."""

    def __init__(self, message: str, *, pan_refused: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.pan_refused = pan_refused

    @property
    def reply(self) -> str:
        """The one-line answer for the agent, with the pointer to help."""
        if self.pan_refused:
            return self.message
        return f"{self.message} {HELP_POINTER}"


__all__ = ["HELP_POINTER", "CommandError"]

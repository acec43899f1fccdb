"""The one exception type for bad input. The CLI turns it into one line on stderr and exit code 2."""


class ShardsimError(ValueError):
    """Bad input: the message says what is wrong and what is accepted, in one line."""

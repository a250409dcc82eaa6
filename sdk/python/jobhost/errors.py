"""The SDK's own errors. Any exception an export raises reaches the host as the WIT error
`"{type}: {message}"`; these name what the SDK checked."""


class JobhostError(Exception):
    """Base of the errors the SDK raises itself."""


class BatchError(JobhostError):
    """A batch is malformed, or does not fit the batch layout."""


class StateError(JobhostError):
    """State that cannot be read (unknown format or version, malformed) or written."""


class KeyedStateError(JobhostError):
    """Keyed state used with a record that has no key group, or one of another subtask."""


class ConfigError(JobhostError):
    """A required key of the operator's config is missing or empty."""

"""One router per module, included by ``api.main``."""

"""Token estimates used before a provider reports real usage."""

from sluice.tokens.estimator import estimate_params_tokens, estimate_text_tokens

__all__ = ["estimate_params_tokens", "estimate_text_tokens"]

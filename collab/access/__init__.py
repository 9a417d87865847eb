"""Who is asking and what they may do: tokens, principals, roles.

Below the live path and the commands, which both ask it; it does no I/O of its own
except fetching an identity provider's keys (``jwks``).
"""

"""API keys, principals and roles: who may call what."""

"""x509_mgmt: the platform's device certificate authority (dojot's x509-identity-mgmt API)."""

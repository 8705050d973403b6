"""auth: users, tenants and the decisions the gateway delegates (who may do what)."""

"""API users, passwords, login tokens, roles and the login throttle."""

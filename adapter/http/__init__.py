"""How an endpoint is declared, validated, documented and answered (the envelope, the one error mapping)."""

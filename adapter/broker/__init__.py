"""EMQX: its REST client, the field mapping of its views, rule install, device authentication and authorization."""

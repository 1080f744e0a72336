"""What EMQX and the devices say: the events EMQX pushes, the agent's uplink topics and payloads, MQTT topic filters."""

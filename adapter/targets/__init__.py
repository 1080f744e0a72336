"""Callbacks and message routes: their store, topic filters, the route table and forwarding."""

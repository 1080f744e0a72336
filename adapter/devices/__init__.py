"""Devices, peripherals and presence: what EMQX events change (store, Lua) and how they are read."""

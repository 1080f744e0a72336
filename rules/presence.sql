-- Presence: every connect and disconnect of every client (DESIGN section 5 orders them by connected_at).
SELECT
  *
FROM
  "$events/client_connected", "$events/client_disconnected"

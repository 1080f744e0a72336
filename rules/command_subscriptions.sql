-- Subscriptions to and from the command topics dma/cmd/{sn}: a device is ready for commands once it
-- has subscribed to its own (DESIGN section 7).
SELECT
  *
FROM
  "$events/session_subscribed", "$events/session_unsubscribed"
WHERE
  topic =~ 'dma/cmd/+'

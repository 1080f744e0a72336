-- Devices acknowledging the QoS 1 commands the adapter published on dma/cmd/{sn}. In message.acked,
-- clientid is the device that acknowledged and from_clientid the publisher: http_api for what the adapter
-- published through EMQX's REST API. A device subscribed with QoS 0 receives commands as QoS 0 and never
-- acknowledges them. The payload is the adapter's own JSON command, sent as it is.
SELECT
  *
FROM
  "$events/message_acked"
WHERE
  topic =~ 'dma/cmd/+' AND from_clientid = 'http_api'

-- Devices acknowledging the QoS 1 commands the adapter published on dma/cmd/{sn}. The payload is the
-- adapter's own JSON command, sent as it is.
SELECT
  *
FROM
  "$events/message_acked"
WHERE
  topic =~ 'dma/cmd/+' AND clientid != 'http_api'

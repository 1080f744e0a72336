-- Every other message, for the message routes. These payloads may be binary: EMQX would replace
-- non-UTF-8 bytes with U+FFFD when it encodes the event as JSON, so the rule base64-encodes the
-- payload and says so in payload_encoding. Messages the adapter published through the REST API
-- (clientid http_api) are left out. The exclusion is written as NOT on one comparison: EMQX 5.8's
-- rule runtime cannot evaluate NOT over a parenthesised AND/OR (the rule fails on every message).
SELECT
  *,
  base64_encode(payload) AS payload,
  'base64' AS payload_encoding
FROM
  "#"
WHERE
  clientid != 'http_api' AND NOT topic =~ 'dma/report/#' AND topic != 'dma/resp/cmd'

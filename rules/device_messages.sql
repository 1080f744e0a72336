-- DMA uplink: device reports and command responses. The protocol makes these payloads UTF-8 JSON, so
-- they are sent as they are (readable, a third smaller than base64). Messages the adapter published
-- through the REST API (clientid http_api) are left out.
SELECT
  *
FROM
  "dma/report/#", "dma/resp/cmd"
WHERE
  clientid != 'http_api'

-- Configuration of the ondas-pdp plugin (Kong 3 schema).
local typedefs = require "kong.db.schema.typedefs"

return {
  name = "ondas-pdp",
  fields = {
    -- Decisions are about the token's user, not about Kong consumers.
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    {
      config = {
        type = "record",
        fields = {
          -- auth's gateway decision endpoint.
          { pdp_url = typedefs.url({ required = true, default = "http://auth:5000/pdp/gateway" }) },
          -- Milliseconds for connecting to, sending to and reading from the PDP.
          { timeout = { type = "integer", default = 5000, between = { 1, 60000 } } },
          -- Milliseconds an idle connection to the PDP is kept for reuse.
          { keepalive = { type = "integer", default = 60000, between = { 1, 3600000 } } },
        },
      },
    },
  },
}

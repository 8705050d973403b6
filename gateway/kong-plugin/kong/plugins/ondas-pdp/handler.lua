-- ondas-pdp: Kong plugin that delegates each request on a protected route to auth's policy decision point.
--
-- For every request it sends auth's /pdp/gateway (config.pdp_url) the request's Authorization header unchanged,
-- X-Original-Method and X-Original-URI (the raw path with its query string). The PDP checks the token (signature,
-- algorithm, expiry, revocation) and the caller's permissions and answers:
--   200  permit: the request goes on to the service with X-Ondas-Tenant and X-Ondas-User set from the answer
--        (whatever the client sent in those headers is dropped first);
--   401  no or bad token, 403 valid token without permission: passed on to the client with the PDP's JSON body
--        and its X-Ondas-Reason header (and WWW-Authenticate on 401).
-- Anything else, or no answer, refuses the request with 502: the gateway fails closed.

local http = require "resty.http"

local OndasPdp = {
  -- With Kong's authentication plugins (which run between 1000 and 1450), before rate limiting and transforms.
  PRIORITY = 1000,
  VERSION = "0.1.0",
}

local CALLER_HEADERS = { "X-Ondas-Tenant", "X-Ondas-User" }

local function refuse(status, body, headers)
  headers = headers or {}
  headers["Content-Type"] = headers["Content-Type"] or "application/json"
  return kong.response.exit(status, body, headers)
end

local function unavailable(reason)
  kong.log.err("ondas-pdp: ", reason)
  return refuse(502, '{"error":"pdp_unavailable","message":"the access decision could not be obtained"}')
end

function OndasPdp:access(conf)
  for _, name in ipairs(CALLER_HEADERS) do
    kong.service.request.clear_header(name)
  end

  local headers = {
    ["X-Original-Method"] = kong.request.get_method(),
    ["X-Original-URI"] = kong.request.get_path_with_query(),
  }
  local authorization = kong.request.get_header("Authorization")
  if authorization then
    headers["Authorization"] = authorization
  end
  local request_id = kong.request.get_header("X-Request-Id")
  if request_id then
    headers["X-Request-Id"] = request_id
  end

  local httpc = http.new()
  httpc:set_timeout(conf.timeout)
  local res, err = httpc:request_uri(conf.pdp_url, {
    method = "GET",
    headers = headers,
    keepalive_timeout = conf.keepalive,
  })
  if not res then
    return unavailable("request to " .. conf.pdp_url .. " failed: " .. tostring(err))
  end

  local status = res.status
  if status == 200 then
    for _, name in ipairs(CALLER_HEADERS) do
      local value = res.headers[name]
      if value then
        kong.service.request.set_header(name, value)
      end
    end
    return
  end

  if status == 401 or status == 403 then
    local out = {
      ["Content-Type"] = res.headers["Content-Type"] or "application/json",
      ["X-Ondas-Reason"] = res.headers["X-Ondas-Reason"],
    }
    if status == 401 then
      out["WWW-Authenticate"] = res.headers["WWW-Authenticate"] or 'Bearer realm="ondas"'
    end
    return refuse(status, res.body, out)
  end

  return unavailable("unexpected answer " .. tostring(status) .. " from " .. conf.pdp_url)
end

return OndasPdp

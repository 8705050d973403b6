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
-- A request with a control character (0x00-0x1f, 0x7f) in its path or query string (raw or percent-escaped) or
-- in a header value (a tab excepted) is refused with 400 before the PDP is asked.

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

local CONTROL_MESSAGE = "control characters in the path, query string or a header"

-- Does the raw path and query hold a control character (0x00-0x1f, 0x7f), raw or percent-escaped?
local function uri_has_control(uri)
  return uri:find("%c") ~= nil or uri:find("%%[01]%x") ~= nil or uri:find("%%7[fF]") ~= nil
end

-- Does a header value hold one (a horizontal tab is allowed in a header value)? Repeated headers are lists.
local function header_has_control(value)
  if type(value) == "table" then
    for _, v in ipairs(value) do
      if header_has_control(v) then
        return true
      end
    end
    return false
  end
  return type(value) == "string" and value:find("[%z\1-\8\10-\31\127]") ~= nil
end

local function has_control(uri)
  if uri_has_control(uri) then
    return true
  end
  for _, value in pairs(kong.request.get_headers() or {}) do
    if header_has_control(value) then
      return true
    end
  end
  return false
end

-- The PDP's reason, fit for a header whatever it holds: printable ASCII, at most 300 characters.
local function header_safe(reason)
  if type(reason) ~= "string" then
    return nil
  end
  return (reason:gsub("[^\32-\126]", "?"):sub(1, 300))
end

function OndasPdp:access(conf)
  for _, name in ipairs(CALLER_HEADERS) do
    kong.service.request.clear_header(name)
  end

  -- Refused before the PDP is asked: such a request is never one a service routes (and the raw URI goes into
  -- a header of the PDP request).
  if has_control(kong.request.get_path_with_query() or "") then
    return refuse(400, '{"error":"invalid","message":"' .. CONTROL_MESSAGE .. '"}')
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
      ["X-Ondas-Reason"] = header_safe(res.headers["X-Ondas-Reason"]),
    }
    if status == 401 then
      out["WWW-Authenticate"] = res.headers["WWW-Authenticate"] or 'Bearer realm="ondas"'
    end
    return refuse(status, res.body, out)
  end

  return unavailable("unexpected answer " .. tostring(status) .. " from " .. conf.pdp_url)
end

return OndasPdp

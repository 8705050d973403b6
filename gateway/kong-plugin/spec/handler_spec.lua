-- The ondas-pdp handler against a scripted PDP, with a fake of Kong's PDK (spec/helpers/fake_kong.lua).
local fake = require "spec.helpers.fake_kong"

local function pdp_answer(status, headers, body)
  return function()
    return { status = status, headers = headers or {}, body = body or "" }
  end
end

describe("ondas-pdp handler", function()
  local request

  before_each(function()
    request = {
      method = "PUT",
      path_with_query = "/device/ab12/actuate?x=%2F1",
      headers = { authorization = "Bearer abc.def.ghi", ["x-request-id"] = "req-1", ["X-Ondas-Tenant"] = "evil" },
    }
  end)

  it("runs with Kong's authentication plugins", function()
    local handler = fake.load_handler(fake.scripted_http(pdp_answer(200)))
    assert.are.equal(1000, handler.PRIORITY)
    assert.is_string(handler.VERSION)
  end)

  it("asks the PDP with the original method, raw URI and Authorization header unchanged", function()
    local http, sent = fake.scripted_http(pdp_answer(200))
    local handler = fake.load_handler(http)
    fake.install(request)
    handler:access(fake.conf)
    assert.are.equal("http://auth:5000/pdp/gateway", sent.url)
    assert.are.equal("GET", sent.params.method)
    assert.are.equal("PUT", sent.params.headers["X-Original-Method"])
    assert.are.equal("/device/ab12/actuate?x=%2F1", sent.params.headers["X-Original-URI"])
    assert.are.equal("Bearer abc.def.ghi", sent.params.headers["Authorization"])
    assert.are.equal("req-1", sent.params.headers["X-Request-Id"])
    assert.are.equal(5000, sent.timeout)
  end)

  it("sends no Authorization header when the client sent none", function()
    local http, sent = fake.scripted_http(pdp_answer(401, { ["X-Ondas-Reason"] = "no token" }, "{}"))
    local handler = fake.load_handler(http)
    request.headers.authorization = nil
    fake.install(request)
    handler:access(fake.conf)
    assert.is_nil(sent.params.headers["Authorization"])
  end)

  it("lets a permitted request through, naming the caller from the PDP's answer", function()
    local handler = fake.load_handler(fake.scripted_http(pdp_answer(200, {
      ["x-ondas-tenant"] = "acme",
      ["x-ondas-user"] = "alice",
    }, '{"decision":"permit"}')))
    local calls = fake.install(request)
    handler:access(fake.conf)
    assert.is_nil(calls.exit)
    assert.are.same({ "X-Ondas-Tenant", "X-Ondas-User" }, calls.cleared)
    assert.are.equal("acme", calls.set["X-Ondas-Tenant"])
    assert.are.equal("alice", calls.set["X-Ondas-User"])
  end)

  it("drops what the client sent as the caller even when the PDP names nobody", function()
    local handler = fake.load_handler(fake.scripted_http(pdp_answer(200)))
    local calls = fake.install(request)
    handler:access(fake.conf)
    assert.is_nil(calls.exit)
    assert.is_nil(calls.set["X-Ondas-Tenant"])
    assert.are.same({ "X-Ondas-Tenant", "X-Ondas-User" }, calls.cleared)
  end)

  for _, case in ipairs({ { 401, "token expired" }, { 403, "your permissions do not allow PUT /x" } }) do
    local status, reason = case[1], case[2]
    it("passes a " .. status .. " refusal on with the PDP's body and reason", function()
      local body = '{"error":"x","message":"' .. reason .. '"}'
      local handler = fake.load_handler(fake.scripted_http(pdp_answer(status, {
        ["content-type"] = "application/json",
        ["x-ondas-reason"] = reason,
      }, body)))
      local calls = fake.install(request)
      handler:access(fake.conf)
      assert.are.equal(status, calls.exit.status)
      assert.are.equal(body, calls.exit.body)
      assert.are.equal(reason, calls.exit.headers["X-Ondas-Reason"])
      assert.are.equal("application/json", calls.exit.headers["Content-Type"])
      if status == 401 then
        assert.matches("^Bearer", calls.exit.headers["WWW-Authenticate"])
      else
        assert.is_nil(calls.exit.headers["WWW-Authenticate"])
      end
      assert.is_nil(calls.set["X-Ondas-Tenant"])
    end)
  end

  it("fails closed when the PDP cannot be reached", function()
    local handler = fake.load_handler(fake.scripted_http(function()
      return nil, "connection refused"
    end))
    local calls = fake.install(request)
    handler:access(fake.conf)
    assert.are.equal(502, calls.exit.status)
    assert.matches("pdp_unavailable", calls.exit.body)
    assert.matches("connection refused", calls.errors[1])
  end)

  for _, status in ipairs({ 500, 404, 302, 204 }) do
    it("fails closed on an unexpected answer " .. status, function()
      local handler = fake.load_handler(fake.scripted_http(pdp_answer(status, {}, "oops")))
      local calls = fake.install(request)
      handler:access(fake.conf)
      assert.are.equal(502, calls.exit.status)
      assert.is_nil(calls.set["X-Ondas-Tenant"])
    end)
  end

  it("uses the configured PDP URL and timeout", function()
    local http, sent = fake.scripted_http(pdp_answer(200))
    local handler = fake.load_handler(http)
    fake.install(request)
    handler:access({ pdp_url = "http://pdp.internal:8080/pdp/gateway", timeout = 250, keepalive = 1000 })
    assert.are.equal("http://pdp.internal:8080/pdp/gateway", sent.url)
    assert.are.equal(250, sent.timeout)
    assert.are.equal(1000, sent.params.keepalive_timeout)
  end)

  for _, uri in ipairs({ "/device/a%0ab", "/device/a%0Db", "/device/%00", "/device/a%1f", "/device/a%7F",
    "/device?x=%0a", "/device/a\nb" }) do
    it("refuses control characters in the URI before asking the PDP: " .. uri:gsub("%c", "?"), function()
      local http, sent = fake.scripted_http(pdp_answer(200))
      local handler = fake.load_handler(http)
      request.path_with_query = uri
      local calls = fake.install(request)
      handler:access(fake.conf)
      assert.are.equal(400, calls.exit.status)
      assert.are.equal("application/json", calls.exit.headers["Content-Type"])
      assert.matches('"error":"invalid"', calls.exit.body)
      assert.matches("control characters", calls.exit.body)
      assert.is_nil(sent.url)
    end)
  end

  it("refuses control characters in a header value before asking the PDP", function()
    local http, sent = fake.scripted_http(pdp_answer(200))
    local handler = fake.load_handler(http)
    request.headers["x-request-id"] = "a\1b"
    local calls = fake.install(request)
    handler:access(fake.conf)
    assert.are.equal(400, calls.exit.status)
    assert.is_nil(sent.url)
  end)

  it("checks every value of a repeated header", function()
    local handler = fake.load_handler(fake.scripted_http(pdp_answer(200)))
    request.headers["x-thing"] = { "fine", "bad\127" }
    local calls = fake.install(request)
    handler:access(fake.conf)
    assert.are.equal(400, calls.exit.status)
  end)

  it("lets escaped percents, printable escapes and tabs in header values through", function()
    local http, sent = fake.scripted_http(pdp_answer(200))
    local handler = fake.load_handler(http)
    request.path_with_query = "/device/%250a?x=%41"
    request.headers["user-agent"] = "a\tb"
    local calls = fake.install(request)
    handler:access(fake.conf)
    assert.is_nil(calls.exit)
    assert.are.equal("/device/%250a?x=%41", sent.params.headers["X-Original-URI"])
  end)

  it("never passes a PDP reason that could split a header", function()
    local handler = fake.load_handler(fake.scripted_http(pdp_answer(403, {
      ["X-Ondas-Reason"] = "bad\r\nSet-Cookie: x=1",
    }, '{"error":"forbidden"}')))
    local calls = fake.install(request)
    handler:access(fake.conf)
    assert.are.equal(403, calls.exit.status)
    assert.are.equal("bad??Set-Cookie: x=1", calls.exit.headers["X-Ondas-Reason"])
  end)
end)

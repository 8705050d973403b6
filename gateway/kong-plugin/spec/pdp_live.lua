-- The ondas-pdp handler against the real auth PDP (run by tests/e2e/test_gateway_matrix.py, which starts the
-- platform and passes its PDP URL and tokens in the environment). Kong's PDK is faked; the HTTP calls are real.
local fake = require "spec.helpers.fake_kong"

local PDP = assert(os.getenv("ONDAS_PDP_URL"), "set ONDAS_PDP_URL")
local ADMIN = assert(os.getenv("ONDAS_ADMIN_TOKEN"), "set ONDAS_ADMIN_TOKEN")
local READER = assert(os.getenv("ONDAS_READER_TOKEN"), "set ONDAS_READER_TOKEN")
local REVOKED = assert(os.getenv("ONDAS_REVOKED_TOKEN"), "set ONDAS_REVOKED_TOKEN")

local function decide(method, uri, token)
  local handler = fake.load_handler(fake.socket_http())
  local headers = {}
  if token then
    headers.Authorization = "Bearer " .. token
  end
  local calls = fake.install({ method = method, path_with_query = uri, headers = headers })
  handler:access({ pdp_url = PDP, timeout = 5000, keepalive = 1000 })
  return calls
end

describe("ondas-pdp with auth's PDP", function()
  it("permits the admin and names the caller", function()
    local calls = decide("POST", "/device?label=x", ADMIN)
    assert.is_nil(calls.exit)
    assert.are.equal("admin", calls.set["X-Ondas-Tenant"])
    assert.are.equal("admin", calls.set["X-Ondas-User"])
  end)

  it("permits a plain user's read", function()
    local calls = decide("GET", "/history/device/x/history?lastN=1", READER)
    assert.is_nil(calls.exit)
  end)

  it("refuses a plain user's write with 403 and auth's JSON body", function()
    local calls = decide("DELETE", "/device/abc", READER)
    assert.are.equal(403, calls.exit.status)
    assert.matches('"error"', calls.exit.body)
    assert.is_string(calls.exit.headers["X-Ondas-Reason"])
  end)

  it("refuses a request without a token with 401", function()
    local calls = decide("GET", "/device", nil)
    assert.are.equal(401, calls.exit.status)
    assert.matches("^Bearer", calls.exit.headers["WWW-Authenticate"])
  end)

  it("refuses a revoked token with 401", function()
    local calls = decide("GET", "/device", REVOKED)
    assert.are.equal(401, calls.exit.status)
  end)

  it("refuses a token whose signature does not match with 401", function()
    local head, body = ADMIN:match("^([^.]+)%.([^.]+)%.")
    local calls = decide("GET", "/device", head .. "." .. body .. ".c2lnbmF0dXJl")
    assert.are.equal(401, calls.exit.status)
  end)
end)

-- The plugin's schema, read with a minimal stand-in for Kong's typedefs.
describe("ondas-pdp schema", function()
  local schema

  setup(function()
    package.loaded["kong.db.schema.typedefs"] = {
      no_consumer = { type = "foreign" },
      protocols_http = { type = "set" },
      url = function(overrides)
        local t = { type = "string", custom_validator = "url" }
        for k, v in pairs(overrides or {}) do
          t[k] = v
        end
        return t
      end,
    }
    schema = require "kong.plugins.ondas-pdp.schema"
  end)

  local function config_field(name)
    for _, field in ipairs(schema.fields) do
      if field.config then
        for _, f in ipairs(field.config.fields) do
          if f[name] then
            return f[name]
          end
        end
      end
    end
  end

  it("is named like the plugin in kong.yml", function()
    assert.are.equal("ondas-pdp", schema.name)
  end)

  it("requires a PDP URL, defaulting to auth's gateway decision endpoint", function()
    local f = config_field("pdp_url")
    assert.is_true(f.required)
    assert.are.equal("http://auth:5000/pdp/gateway", f.default)
    assert.are.equal("url", f.custom_validator)
  end)

  it("bounds the timeout and the keepalive", function()
    assert.are.same({ 1, 60000 }, config_field("timeout").between)
    assert.are.equal(5000, config_field("timeout").default)
    assert.are.equal(60000, config_field("keepalive").default)
  end)
end)

-- A small stand-in for the parts of Kong's PDK and of lua-resty-http that the ondas-pdp plugin uses, so its
-- specs run on plain Lua 5.1 with busted. Each call is recorded for the specs to check.
local M = {}

-- Header tables that, like Kong's and lua-resty-http's, find a header whatever the case of its name.
local function header_table(initial)
  local store = {}
  local t = setmetatable({}, {
    __index = function(_, k)
      return store[string.lower(k)]
    end,
    __newindex = function(_, k, v)
      store[string.lower(k)] = v
    end,
  })
  for k, v in pairs(initial or {}) do
    t[k] = v
  end
  return t
end
M.header_table = header_table

-- Installs a global `kong` for one request: {method = "GET", path_with_query = "/x?y", headers = {...}}.
function M.install(request)
  local calls = { set = {}, cleared = {}, exit = nil, errors = {} }
  local incoming = header_table(request.headers)
  _G.kong = {
    request = {
      get_method = function()
        return request.method
      end,
      get_path_with_query = function()
        return request.path_with_query
      end,
      get_header = function(name)
        return incoming[name]
      end,
      get_headers = function()
        local all = {}
        for k, v in pairs(request.headers or {}) do
          all[string.lower(k)] = v
        end
        return all
      end,
    },
    service = {
      request = {
        set_header = function(name, value)
          calls.set[name] = value
        end,
        clear_header = function(name)
          table.insert(calls.cleared, name)
          calls.set[name] = nil
        end,
      },
    },
    response = {
      exit = function(status, body, headers)
        calls.exit = { status = status, body = body, headers = headers or {} }
        return calls.exit
      end,
    },
    log = {
      err = function(...)
        table.insert(calls.errors, table.concat({ ... }))
      end,
    },
  }
  return calls
end

-- A scripted resty.http: `answer(url, params)` returns what request_uri returns (res, err).
function M.scripted_http(answer)
  local sent = {}
  local module = {
    new = function()
      return {
        set_timeout = function(self, ms)
          sent.timeout = ms
        end,
        request_uri = function(self, url, params)
          sent.url, sent.params = url, params
          local res, err = answer(url, params)
          if res then
            res.headers = header_table(res.headers)
          end
          return res, err
        end,
      }
    end,
  }
  return module, sent
end

-- A resty.http over LuaSocket, for specs against a real PDP.
function M.socket_http()
  local socket_http = require "socket.http"
  local ltn12 = require "ltn12"
  return {
    new = function()
      return {
        set_timeout = function(self, ms)
          socket_http.TIMEOUT = ms / 1000
        end,
        request_uri = function(self, url, params)
          local chunks = {}
          local ok, status, headers = socket_http.request({
            url = url,
            method = params.method,
            headers = params.headers,
            sink = ltn12.sink.table(chunks),
          })
          if not ok then
            return nil, status
          end
          return { status = status, headers = header_table(headers), body = table.concat(chunks) }
        end,
      }
    end,
  }
end

-- Loads the plugin's handler with `http_module` as resty.http.
function M.load_handler(http_module)
  package.loaded["resty.http"] = http_module
  package.loaded["kong.plugins.ondas-pdp.handler"] = nil
  return require "kong.plugins.ondas-pdp.handler"
end

M.conf = { pdp_url = "http://auth:5000/pdp/gateway", timeout = 5000, keepalive = 60000 }

return M

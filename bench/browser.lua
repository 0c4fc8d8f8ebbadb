-- wrk script: send the Cookie header given as the first argument and keep it
-- current from Set-Cookie answers, as a browser does (the gateway refreshes
-- the second-factor session cookie about once a minute).
local jar = {}
local order = {}

local function header()
  local parts = {}
  for _, name in ipairs(order) do
    if jar[name] ~= nil then
      parts[#parts + 1] = name .. "=" .. jar[name]
    end
  end
  return table.concat(parts, "; ")
end

local cached

function init(args)
  for pair in string.gmatch(args[1] or "", "([^;]+)") do
    local name, value = string.match(pair, "^%s*([^=]+)=(.*)$")
    if name then
      order[#order + 1] = name
      jar[name] = value
    end
  end
  cached = header()
end

function request()
  return wrk.format(nil, nil, { ["Cookie"] = cached })
end

function response(status, headers, body)
  local set = headers["Set-Cookie"]
  if set then
    local name, value = string.match(set, "^%s*([^=]+)=([^;]*)")
    if name then
      if jar[name] == nil then order[#order + 1] = name end
      jar[name] = value
      cached = header()
    end
  end
end

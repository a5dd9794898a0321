-- Argo CD health check for eol.dev/Feature, read from the conditions eol-operator writes.
-- Argo CD runs custom checks with the base and table libraries only: no string
-- library, so plain comparisons and `..` throughout. Every field is type-checked
-- first: a half-written or malformed status never raises an error.
local hs = {}

local function condition(conditions, kind)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == kind then
      return c
    end
  end
  return nil
end

local function number(value)
  if type(value) == "number" then
    return value
  end
  if type(value) == "string" then
    return tonumber(value)
  end
  return nil
end

-- The condition's message, or its type and reason when it has none.
local function explain(c)
  if type(c.message) == "string" and c.message ~= "" then
    return c.message
  end
  local text = tostring(c.type) .. " is " .. tostring(c.status)
  if type(c.reason) == "string" and c.reason ~= "" then
    text = text .. " (" .. c.reason .. ")"
  end
  return text
end

-- The health `status`, explained by the condition `c`.
local function verdict(status, c)
  hs.status = status
  hs.message = explain(c)
  return hs
end

local status = obj.status
if type(status) ~= "table" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

-- A status written for an older spec says nothing about the current one.
local generation = nil
if type(obj.metadata) == "table" then
  generation = number(obj.metadata.generation)
end
local observed = number(status.observedGeneration)
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  if observed == nil then
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  else
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
      .. " (the status describes generation " .. tostring(observed) .. ")"
  end
  return hs
end

local conditions = status.conditions

-- The spec cannot apply (parse error, invalid tests, unavailable phase, missing
-- source): nothing rolls out until it is fixed, even if old pods still serve.
local specValid = condition(conditions, "SpecValid")
if specValid ~= nil and specValid.status == "False" then
  return verdict("Degraded", specValid)
end

-- The model's Secret is missing or no model is configured: nothing rolls out.
local model = condition(conditions, "ModelConfigured")
if model ~= nil and model.status == "False" then
  return verdict("Degraded", model)
end

-- Reasons Failed, RolledBack, Disagreement and CanaryErrors: the new pods failed
-- their tests or did not become ready in time, or a shadow or canary candidate
-- disagreed with the serving pods or failed live calls, and is held; the previous
-- configuration keeps serving. Unknown (Progressing, Shadowing, Canary): a switch
-- rolls out, or its candidate samples or answers live traffic beside the serving pods.
local switch = condition(conditions, "PhaseSwitch")
if switch ~= nil and switch.status == "False" then
  return verdict("Degraded", switch)
end
if switch ~= nil and (switch.status == "Unknown" or switch.reason == "Progressing") then
  return verdict("Progressing", switch)
end

local ready = condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  return verdict("Healthy", ready)
end
if ready ~= nil and ready.status == "False" then
  return verdict("Progressing", ready)
end

hs.status = "Progressing"
hs.message = "Waiting for the operator"
return hs

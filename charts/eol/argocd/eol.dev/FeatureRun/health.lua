-- Argo CD health check for eol.dev/FeatureRun, read from the condition eol-operator writes.
-- A run has one condition, Succeeded (Tekton style): Unknown while it waits or
-- runs, then True or False for good. Base and table libraries only, as Argo CD
-- runs custom checks; every field is type-checked so nothing raises an error.
local hs = {}

local succeeded = nil
if type(obj.status) == "table" and type(obj.status.conditions) == "table" then
  for _, c in ipairs(obj.status.conditions) do
    if type(c) == "table" and c.type == "Succeeded" then
      succeeded = c
      break
    end
  end
end

if succeeded == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

local message = succeeded.message
if type(message) ~= "string" or message == "" then
  message = nil
  if type(succeeded.reason) == "string" and succeeded.reason ~= "" then
    message = succeeded.reason
  end
end

if succeeded.status == "True" then
  hs.status = "Healthy"
  hs.message = message or "The run succeeded"
elseif succeeded.status == "False" then
  -- Failed (the runner's error or the failing tests), TimedOut, Cancelled,
  -- SpecInvalid or FeatureNotFound: the run is over and will not be retried.
  hs.status = "Degraded"
  hs.message = message or "The run failed"
else
  -- Pending (waiting for the Feature, the namespace's Redis or the pod), Running, or
  -- Retrying (an attempt failed; the next pod starts).
  hs.status = "Progressing"
  hs.message = message or "Waiting for the operator"
end
return hs

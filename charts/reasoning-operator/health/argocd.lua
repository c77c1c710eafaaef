-- Argo CD health check for reasoning.dev/ReasoningRun
-- (argocd-cm: resource.customizations.health.reasoning.dev_ReasoningRun; see the chart's README).
--
-- Reads the status the operator writes: phase (Pending, Running, Succeeded, Failed, Suspended),
-- observedGeneration, currentStage, progress ("done/total") and kstatus conditions Ready, Reconciling and
-- Stalled. Order matters: a status older than the spec says nothing about the spec, a stalled run is
-- degraded whatever its phase says, a finished run stays healthy, and a pause the user asked for is not
-- a failure.
local hs = {}

local function condition(status, wanted)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function explain(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to pick up the run"
  return hs
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if observed == nil or (generation ~= nil and observed < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe generation " .. tostring(generation or "?")
  return hs
end

local stalled = condition(status, "Stalled")
local ready = condition(status, "Ready")
if (stalled ~= nil and stalled.status == "True") or status.phase == "Failed" then
  hs.status = "Degraded"
  if stalled ~= nil and stalled.status == "True" then
    hs.message = explain(stalled, "the run is stalled")
  else
    hs.message = explain(ready, "the run failed")
  end
  return hs
end

if status.phase == "Succeeded" and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = explain(ready, "the run succeeded")
  return hs
end

local stage = status.currentStage
if status.phase == "Suspended" or (obj.spec ~= nil and obj.spec.suspend == true) then
  hs.status = "Suspended"
  if stage ~= nil and stage ~= "" then
    hs.message = "suspended at stage " .. stage
  else
    hs.message = "suspended"
  end
  return hs
end

hs.status = "Progressing"
if stage ~= nil and stage ~= "" then
  hs.message = "stage " .. stage
  if status.progress ~= nil and status.progress ~= "" then
    hs.message = hs.message .. ": " .. status.progress
  end
else
  hs.message = explain(condition(status, "Reconciling"), status.phase or "waiting for the operator")
end
return hs

-- Argo CD actions of a SegmentExport: run-now (always), suspend or resume (by spec.suspend).
-- A suspended export still runs on demand: suspend stops only scheduled runs.
local actions = {}
actions["run-now"] = {["disabled"] = false}
actions["suspend"] = {["disabled"] = true}
actions["resume"] = {["disabled"] = true}

local suspended = obj.spec ~= nil and obj.spec.suspend == true
if suspended then
  actions["resume"]["disabled"] = false
else
  actions["suspend"]["disabled"] = false
end
return actions

-- Ask for one run now: give the annotation sendgrid-operator.io/run-requested-at a new value
-- (the current UTC time). Every new value starts exactly one run; the operator echoes the
-- handled value in status.lastHandledRunRequest.
local os = require("os")
local key = "sendgrid-operator.io/run-requested-at"

if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local previous = obj.metadata.annotations[key]
local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
local value = now
local n = 0
-- Two clicks within one second must still be two requests: the value has to change.
while value == previous do
  n = n + 1
  value = now .. "-" .. n
end
obj.metadata.annotations[key] = value
return obj

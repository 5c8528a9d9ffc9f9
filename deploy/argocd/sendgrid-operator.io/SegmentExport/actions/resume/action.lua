-- Start scheduled runs again (spec.suspend: false).
obj.spec.suspend = false
return obj

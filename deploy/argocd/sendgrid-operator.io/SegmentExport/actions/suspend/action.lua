-- Stop starting scheduled runs (spec.suspend: true). On-demand runs (run-now) still work.
obj.spec.suspend = true
return obj

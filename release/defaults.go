package release

// ApplyDefaults fills in what a valid file left out. It is idempotent, so a
// spec that was already completed can go through it again.
func (s *Spec) ApplyDefaults() {
	if s.Chart.Release == "" {
		s.Chart.Release = s.Application
	}
	if s.Chart.VersionValue == "" {
		s.Chart.VersionValue = DefaultVersionValue
	}
	if s.Terraform != nil && s.Terraform.OutputsValue == "" {
		s.Terraform.OutputsValue = DefaultOutputsValue
	}
	for i := range s.Waves {
		w := &s.Waves[i]
		if w.Parallelism == 0 {
			w.Parallelism = len(w.Regions)
		}
		if g := w.Gate; g != nil {
			if g.Name == "" {
				g.Name = GateNamePrefix + w.Name
			}
			if g.When == "" {
				g.When = GateAlways
			}
			if g.OnTimeout == "" {
				g.OnTimeout = TimeoutReject
			}
			if g.Timeout.Duration == 0 {
				g.Timeout.Duration = DefaultGateTimeout
			}
		}
	}
	for i := range s.Health {
		s.Health[i] = s.Health[i].WithDefaults()
	}
	if s.Readiness.Timeout.Duration == 0 {
		s.Readiness.Timeout.Duration = DefaultReadiness
	}
	if s.Rollback.Policy == "" {
		s.Rollback.Policy = RollbackAuto
	}
}

// WithDefaults returns the check with unset fields at their defaults. The
// health activity applies it too, so a check that skipped the loader still
// probes sensibly.
func (h HealthCheck) WithDefaults() HealthCheck {
	if h.Interval.Duration == 0 {
		h.Interval.Duration = DefaultHealthInterval
	}
	if h.Timeout.Duration == 0 {
		h.Timeout.Duration = DefaultHealthTimeout
	}
	if h.FailureLimit == 0 {
		h.FailureLimit = DefaultFailureLimit
	}
	if h.ExpectStatus == 0 {
		h.ExpectStatus = DefaultExpectStatus
	}
	if h.Successes == 0 {
		h.Successes = DefaultSuccesses
	}
	return h
}

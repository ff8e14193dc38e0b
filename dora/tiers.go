package dora

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Level is a performance level of one figure.
type Level string

const (
	LevelElite  Level = "elite"
	LevelHigh   Level = "high"
	LevelMedium Level = "medium"
	LevelLow    Level = "low"
	// LevelNone: no data, or no published level for the figure.
	LevelNone Level = ""
)

// Rank orders levels for metrics: 4 elite, 3 high, 2 medium, 1 low, 0 none.
func (l Level) Rank() int {
	switch l {
	case LevelElite:
		return 4
	case LevelHigh:
		return 3
	case LevelMedium:
		return 2
	case LevelLow:
		return 1
	}
	return 0
}

// Tiers are the published values of each performance level.
//
// The 2024 Accelerate State of DevOps Report (DORA, Google Cloud) is the
// latest to publish levels; its software delivery performance table:
//
//	level   deployment frequency                change lead time          change fail rate  failed deployment recovery time
//	elite   on demand (multiple deploys a day)  less than one day         5%                less than one hour
//	high    once a day to once a week           one day to one week       20%               less than one day
//	medium  once a week to once a month         one week to one month     10%               less than one day
//	low     once a month to once in six months  one month to six months   40%               one week to one month
//
// The levels are clusters of survey answers over all four figures at
// once, so one column need not be ordered: the medium cluster failed less
// often (10%) than the high one (20%), and both recovered in less than a
// day. Keelson grades each figure alone and gives it the best level whose
// published value it meets; a figure worse than every published value is
// low. Hence a change fail rate of 10% or less but above 5% is high (it
// meets high's 20%), and a recovery time under a day is high. Deployment
// rework rate is new in 2025 and has no published levels.
type Tiers struct {
	Name string
	// Frequency: deployments a day at least, for elite, high, medium.
	Frequency [3]float64
	// LeadTime, Recovery: less than, for elite, high, medium.
	LeadTime [3]time.Duration
	Recovery [3]time.Duration
	// FailRate: at most, for elite, high, medium.
	FailRate [3]float64
}

const day = 24 * time.Hour

// Tiers2024 is the table of the 2024 report, as Keelson reads it (above).
// A month is 30 days. "On demand" is read as at least one deployment a
// day on average, which is where the high level's range ends.
var Tiers2024 = Tiers{
	Name:      "DORA 2024 (Accelerate State of DevOps Report)",
	Frequency: [3]float64{1, 1.0 / 7, 1.0 / 30},
	LeadTime:  [3]time.Duration{day, 7 * day, 30 * day},
	Recovery:  [3]time.Duration{time.Hour, day, day},
	FailRate:  [3]float64{0.05, 0.20, 0.10},
}

var levels = [3]Level{LevelElite, LevelHigh, LevelMedium}

// FrequencyLevel grades deployments a day.
func (t Tiers) FrequencyLevel(perDay float64) Level {
	for i, min := range t.Frequency {
		if perDay >= min {
			return levels[i]
		}
	}
	return LevelLow
}

// LeadTimeLevel grades a median change lead time.
func (t Tiers) LeadTimeLevel(d time.Duration) Level { return below(d, t.LeadTime) }

// RecoveryLevel grades a median failed deployment recovery time.
func (t Tiers) RecoveryLevel(d time.Duration) Level { return below(d, t.Recovery) }

func below(d time.Duration, bounds [3]time.Duration) Level {
	for i, b := range bounds {
		if d < b {
			return levels[i]
		}
	}
	return LevelLow
}

// FailRateLevel grades a change fail rate (0 to 1).
func (t Tiers) FailRateLevel(r float64) Level {
	for i, max := range t.FailRate {
		if r <= max {
			return levels[i]
		}
	}
	return LevelLow
}

// ParseWindow reads a period's length: a count of days (30d) or weeks
// (2w), or a Go duration (12h, 90m). It must be positive.
func ParseWindow(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("%q is not a period like 30d, 2w or 12h", s)
	if s == "" {
		return 0, bad
	}
	var d time.Duration
	switch unit := s[len(s)-1]; unit {
	case 'd', 'w':
		n, err := strconv.ParseFloat(s[:len(s)-1], 64)
		if err != nil || n <= 0 || n > 3650 {
			return 0, bad
		}
		d = time.Duration(n * float64(day))
		if unit == 'w' {
			d *= 7
		}
	default:
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, bad
		}
	}
	if d <= 0 {
		return 0, bad
	}
	return d, nil
}

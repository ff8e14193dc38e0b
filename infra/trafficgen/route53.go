package main

// Route 53 is where the generator learns which applications run where and
// how their users are split: every name of the zone with a weighted record
// named "stable" and one named "canary" is an application in a region, and
// the records' weights are the split. Keelson changes those weights during
// a canary; the generator reads them again every cycle.

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
)

// The set identifiers of a region's two sides.
const (
	sideStable = "stable"
	sideCanary = "canary"
)

// Target is one application in one region, split between its two sides.
type Target struct {
	Application string `json:"application"`
	Region      string `json:"region"` // the AWS region, and the kubeconfig context of the same name
	Stable      Side   `json:"stable"`
	Canary      Side   `json:"canary"`
}

// Key names the target in logs and maps: "demo/us-east-1".
func (t Target) Key() string { return t.Application + "/" + t.Region }

// Sides are the target's two sides, stable first.
func (t *Target) Sides() []*Side { return []*Side{&t.Stable, &t.Canary} }

// Side is one side of a target: what its record says and, once the cluster
// was asked, which version serves it.
type Side struct {
	Name      string `json:"name"` // sideStable or sideCanary
	Weight    int64  `json:"weight"`
	Value     string `json:"value"`     // the record's value: demo-canary.demo.us-east-1.lab.keelson.test
	Release   string `json:"release"`   // the Helm release: the value's first label
	Namespace string `json:"namespace"` // the value's second label

	// From the cluster (see kube.go).
	Version string `json:"version"`           // "" when no Deployment of the release was found
	Ready   bool   `json:"ready"`             // a Deployment of the release has ready pods
	Problem string `json:"problem,omitempty"` // why the side is not ready
	// Absent: the cluster answered, and holds no Deployment of the release
	// (never installed, or uninstalled). Nobody uses what was never
	// deployed, so such a side gets no requests (see tick); a cluster that
	// cannot be asked is an outage, and its side answers 503.
	Absent bool `json:"absent,omitempty"`
}

// r53 reads and writes the lab's zone.
type r53 struct {
	client *route53.Client
	zone   string // lab.keelson.test, without the final dot
}

// zoneID finds the zone by name: moto makes its ids up at every start, so
// an id is never kept. "" when there is no such zone.
func (r *r53) zoneID(ctx context.Context) (string, error) {
	out, err := r.client.ListHostedZonesByName(ctx, &route53.ListHostedZonesByNameInput{DNSName: aws.String(r.zone)})
	if err != nil {
		return "", fmt.Errorf("list hosted zones by name %s: %w", r.zone, err)
	}
	for _, z := range out.HostedZones {
		if trimDot(aws.ToString(z.Name)) == r.zone {
			return strings.TrimPrefix(aws.ToString(z.Id), "/hostedzone/"), nil
		}
	}
	return "", nil
}

// records lists every record set of the zone.
func (r *r53) records(ctx context.Context, zoneID string) ([]types.ResourceRecordSet, error) {
	var sets []types.ResourceRecordSet
	p := route53.NewListResourceRecordSetsPaginator(r.client, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zoneID)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list records of zone %s (%s): %w", r.zone, zoneID, err)
		}
		sets = append(sets, page.ResourceRecordSets...)
	}
	return sets, nil
}

// discover returns the zone's targets; none when the zone does not exist
// (moto was restarted and the lab's setup has not run again).
func (r *r53) discover(ctx context.Context) ([]Target, error) {
	id, err := r.zoneID(ctx)
	if err != nil || id == "" {
		return nil, err
	}
	sets, err := r.records(ctx, id)
	if err != nil {
		return nil, err
	}
	return targetsFromRecords(r.zone, sets), nil
}

// targetsFromRecords pairs the weighted records named stable and canary of
// every name APP.REGION.ZONE; names with only one of the two, other set
// identifiers (the failover name's regions) or another shape are skipped.
// Targets come sorted by application and region.
func targetsFromRecords(zone string, sets []types.ResourceRecordSet) []Target {
	byName := map[string]*Target{}
	var found []string
	for _, s := range sets {
		if s.Weight == nil || len(s.ResourceRecords) == 0 {
			continue
		}
		id := aws.ToString(s.SetIdentifier)
		if id != sideStable && id != sideCanary {
			continue
		}
		app, region, ok := parseRecordName(aws.ToString(s.Name), zone)
		if !ok {
			continue
		}
		side, ok := parseSideValue(aws.ToString(s.ResourceRecords[0].Value))
		if !ok {
			continue
		}
		side.Name = id
		side.Weight = aws.ToInt64(s.Weight)
		t := byName[app+"/"+region]
		if t == nil {
			t = &Target{Application: app, Region: region}
			byName[app+"/"+region] = t
			found = append(found, app+"/"+region)
		}
		if id == sideStable {
			t.Stable = side
		} else {
			t.Canary = side
		}
	}
	slices.Sort(found)
	var targets []Target
	for _, k := range found {
		if t := byName[k]; t.Stable.Name != "" && t.Canary.Name != "" {
			targets = append(targets, *t)
		}
	}
	return targets
}

// parseRecordName splits APP.REGION.ZONE (with or without the final dot)
// into the application and the region.
func parseRecordName(name, zone string) (app, region string, ok bool) {
	rest, found := strings.CutSuffix(trimDot(name), "."+trimDot(zone))
	if !found {
		return "", "", false
	}
	app, region, found = strings.Cut(rest, ".")
	if !found || app == "" || region == "" || strings.Contains(region, ".") {
		return "", "", false
	}
	return app, region, true
}

// parseSideValue reads a side's record value, RELEASE.NAMESPACE.…: the Helm
// release that serves the side and its namespace.
func parseSideValue(value string) (Side, bool) {
	labels := strings.Split(trimDot(value), ".")
	if len(labels) < 2 || labels[0] == "" || labels[1] == "" {
		return Side{}, false
	}
	return Side{Value: trimDot(value), Release: labels[0], Namespace: labels[1]}, true
}

func trimDot(name string) string { return strings.TrimSuffix(name, ".") }

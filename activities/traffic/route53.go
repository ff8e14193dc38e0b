package traffic

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
)

// Route53MaxWeight is the highest weight of a weighted record.
const Route53MaxWeight = 255

// route53Provider sets the weights of existing weighted records. It never
// creates records, and changes nothing but their weights: value, TTL,
// alias and health check stay as they are.
type route53Provider struct {
	client *route53.Client
	t      Route53Target
	zoneID string
}

func newRoute53Provider(ctx context.Context, client *route53.Client, t Route53Target) (*route53Provider, error) {
	if t.Name == "" {
		return nil, invalid("route53 target has no record name")
	}
	if len(t.Records) == 0 {
		return nil, invalid("route53 target %s has no records", t.Name)
	}
	p := &route53Provider{client: client, t: t, zoneID: t.HostedZoneID}
	if p.zoneID == "" {
		if t.HostedZone == "" {
			return nil, invalid("route53 target %s has neither hostedZoneId nor hostedZone", t.Name)
		}
		id, err := zoneByName(ctx, client, t.HostedZone)
		if err != nil {
			return nil, err
		}
		p.zoneID = id
	}
	return p, nil
}

// zoneByName finds the ID of the one hosted zone named name.
func zoneByName(ctx context.Context, client *route53.Client, name string) (string, error) {
	out, err := client.ListHostedZonesByName(ctx, &route53.ListHostedZonesByNameInput{DNSName: aws.String(fqdn(name))})
	if err != nil {
		return "", fmt.Errorf("look up hosted zone %s: %w", name, err)
	}
	// AWS lists the zones from this name on, in order; the ones named so
	// come first.
	var ids []string
	for _, z := range out.HostedZones {
		if sameName(aws.ToString(z.Name), name) {
			ids = append(ids, strings.TrimPrefix(aws.ToString(z.Id), "/hostedzone/"))
		}
	}
	switch len(ids) {
	case 0:
		return "", missing("no hosted zone named %s", name)
	case 1:
		return ids[0], nil
	}
	return "", invalid("%d hosted zones named %s (%s); give hostedZoneId", len(ids), name, strings.Join(ids, ", "))
}

func (p *route53Provider) Weights(ctx context.Context) (Weights, error) {
	records, err := p.records(ctx)
	if err != nil {
		return nil, err
	}
	w := make(Weights, len(records))
	for k, rr := range records {
		w[k] = int(aws.ToInt64(rr.Weight))
	}
	return w, nil
}

// SetWeights upserts every changed record in one change batch, so that the
// switch is atomic.
func (p *route53Provider) SetWeights(ctx context.Context, w Weights) error {
	for _, k := range slices.Sorted(maps.Keys(w)) {
		if _, ok := p.t.Records[k]; !ok {
			return invalid("key %q is not one of the records of %s", k, p.describe())
		}
	}
	if err := checkRange(w, Route53MaxWeight, "route53"); err != nil {
		return err
	}
	records, err := p.records(ctx)
	if err != nil {
		return err
	}
	var changes []types.Change
	for _, k := range slices.Sorted(maps.Keys(w)) {
		rr := records[k]
		if aws.ToInt64(rr.Weight) == int64(w[k]) {
			continue
		}
		if want := p.t.Records[k].Value; want != "" && !hasValue(rr, want) {
			slog.WarnContext(ctx, "route53 record's value differs from the release file's; only its weight is changed",
				"record", p.describe(), "setIdentifier", aws.ToString(rr.SetIdentifier), "value", want)
		}
		rr.Weight = aws.Int64(int64(w[k]))
		changes = append(changes, types.Change{Action: types.ChangeActionUpsert, ResourceRecordSet: &rr})
	}
	if len(changes) == 0 {
		return nil
	}
	out, err := p.client.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(p.zoneID),
		ChangeBatch: &types.ChangeBatch{
			Comment: aws.String("keelson: weights " + w.String()),
			Changes: changes,
		},
	})
	if err != nil {
		return route53Error(err, "change weights of "+p.describe())
	}
	slog.InfoContext(ctx, "route53 weights changed", "record", p.describe(), "weights", w.String(),
		"change", aws.ToString(out.ChangeInfo.Id), "status", string(out.ChangeInfo.Status))
	return nil
}

// records reads the target's records by key. Every key must have one, and
// it must be weighted.
func (p *route53Provider) records(ctx context.Context) (map[string]types.ResourceRecordSet, error) {
	typ := types.RRType(recordType(p.t.Type))
	bySetID := map[string]types.ResourceRecordSet{}
	in := &route53.ListResourceRecordSetsInput{
		HostedZoneId:    aws.String(p.zoneID),
		StartRecordName: aws.String(fqdn(p.t.Name)),
		StartRecordType: typ,
	}
list:
	for {
		out, err := p.client.ListResourceRecordSets(ctx, in)
		if err != nil {
			return nil, route53Error(err, "read records of "+p.describe())
		}
		for _, rr := range out.ResourceRecordSets {
			// Records are listed in order from the start name and type;
			// the first of another name or type ends ours.
			if !sameName(aws.ToString(rr.Name), p.t.Name) || rr.Type != typ {
				break list
			}
			if rr.SetIdentifier != nil {
				bySetID[*rr.SetIdentifier] = rr
			}
		}
		if !out.IsTruncated {
			break
		}
		in.StartRecordName = out.NextRecordName
		in.StartRecordType = out.NextRecordType
		in.StartRecordIdentifier = out.NextRecordIdentifier
	}

	records := make(map[string]types.ResourceRecordSet, len(p.t.Records))
	for _, k := range slices.Sorted(maps.Keys(p.t.Records)) {
		setID := p.t.Records[k].SetIdentifier
		rr, ok := bySetID[setID]
		if !ok {
			return nil, missing("no record %s with set identifier %q (%s)", p.describe(), setID, k)
		}
		if rr.Weight == nil {
			return nil, invalid("record %s with set identifier %q (%s) is not weighted", p.describe(), setID, k)
		}
		records[k] = rr
	}
	return records, nil
}

func (p *route53Provider) describe() string {
	return fmt.Sprintf("%s %s in zone %s", fqdn(p.t.Name), recordType(p.t.Type), p.zoneID)
}

func route53Error(err error, what string) error {
	return notFound(err, what, "NoSuchHostedZone")
}

func recordType(t string) string {
	if t == "" {
		return "CNAME"
	}
	return strings.ToUpper(t)
}

// fqdn is name with its trailing dot, as Route 53 returns names.
func fqdn(name string) string {
	return strings.TrimSuffix(name, ".") + "."
}

// sameName compares DNS names as Route 53 does: case-insensitive, with or
// without the trailing dot, with the octal escapes Route 53 returns for
// characters such as '*' (\052) undone.
func sameName(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(unescapeName(a), "."), strings.TrimSuffix(unescapeName(b), "."))
}

func unescapeName(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hasValue(rr types.ResourceRecordSet, value string) bool {
	for _, r := range rr.ResourceRecords {
		if sameName(aws.ToString(r.Value), value) {
			return true
		}
	}
	return false
}

package labtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbv2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/keelson-dev/keelson/release"
)

// MotoRegion is the AWS region the fixtures create their resources in.
const MotoRegion = "us-east-1"

// MotoConfig is an AWS configuration for a moto endpoint: dummy static
// credentials, MotoRegion, every API at endpoint.
func MotoConfig(endpoint string) aws.Config {
	return aws.Config{
		Region:       MotoRegion,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: aws.String(endpoint),
	}
}

// Route53Zone creates a public hosted zone named name and returns its ID
// (without the /hostedzone/ prefix).
func Route53Zone(t testing.TB, endpoint, name string) (zoneID string) {
	t.Helper()
	ctx, cancel := fixtureContext()
	defer cancel()
	out, err := route53.NewFromConfig(MotoConfig(endpoint)).CreateHostedZone(ctx, &route53.CreateHostedZoneInput{
		Name:            aws.String(name),
		CallerReference: aws.String("labtest-" + randomSuffix(t)),
	})
	if err != nil {
		t.Fatalf("labtest: create hosted zone %s: %v", name, err)
	}
	return strings.TrimPrefix(aws.ToString(out.HostedZone.Id), "/hostedzone/")
}

// Route53Weighted creates one weighted record of name and typ (CNAME when
// empty) per key of records, with TTL 30 and the key's weight (0 when not
// in weights), in one change batch.
func Route53Weighted(t testing.TB, endpoint, zoneID, name, typ string, records map[string]release.WeightedRecord, weights map[string]int) {
	t.Helper()
	if typ == "" {
		typ = "CNAME"
	}
	var changes []r53types.Change
	for _, k := range slices.Sorted(maps.Keys(records)) {
		r := records[k]
		changes = append(changes, r53types.Change{
			Action: r53types.ChangeActionCreate,
			ResourceRecordSet: &r53types.ResourceRecordSet{
				Name:            aws.String(name),
				Type:            r53types.RRType(typ),
				TTL:             aws.Int64(30),
				SetIdentifier:   aws.String(r.SetIdentifier),
				Weight:          aws.Int64(int64(weights[k])),
				ResourceRecords: []r53types.ResourceRecord{{Value: aws.String(r.Value)}},
			},
		})
	}
	ctx, cancel := fixtureContext()
	defer cancel()
	_, err := route53.NewFromConfig(MotoConfig(endpoint)).ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(zoneID),
		ChangeBatch:  &r53types.ChangeBatch{Changes: changes},
	})
	if err != nil {
		t.Fatalf("labtest: create weighted records %s %s in zone %s: %v", name, typ, zoneID, err)
	}
}

// ELBv2Listener creates an application load balancer (in a new VPC with two
// subnets), two target groups (keys "stable" and "canary"), an HTTP
// listener whose default action forwards to both (stable 100, canary 0),
// and a rule of that listener (path /canary/*) that forwards the same way.
func ELBv2Listener(t testing.TB, endpoint string) (listenerARN, ruleARN string, targetGroups map[string]string) {
	t.Helper()
	ctx, cancel := fixtureContext()
	defer cancel()
	suffix := randomSuffix(t)

	vpcID := CreateVPC(t, endpoint, "10.0.0.0/16")
	subnets := []string{
		CreateSubnet(t, endpoint, vpcID, "10.0.1.0/24", MotoRegion+"a"),
		CreateSubnet(t, endpoint, vpcID, "10.0.2.0/24", MotoRegion+"b"),
	}

	client := elbv2.NewFromConfig(MotoConfig(endpoint))
	lb, err := client.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{
		Name:    aws.String("keelson-" + suffix),
		Subnets: subnets,
		Type:    elbv2types.LoadBalancerTypeEnumApplication,
		Scheme:  elbv2types.LoadBalancerSchemeEnumInternal,
	})
	if err != nil {
		t.Fatalf("labtest: create load balancer: %v", err)
	}
	lbARN := aws.ToString(lb.LoadBalancers[0].LoadBalancerArn)

	targetGroups = map[string]string{}
	for _, side := range []string{"stable", "canary"} {
		tg, err := client.CreateTargetGroup(ctx, &elbv2.CreateTargetGroupInput{
			Name:       aws.String(side + "-" + suffix),
			Protocol:   elbv2types.ProtocolEnumHttp,
			Port:       aws.Int32(80),
			VpcId:      aws.String(vpcID),
			TargetType: elbv2types.TargetTypeEnumIp,
		})
		if err != nil {
			t.Fatalf("labtest: create target group %s: %v", side, err)
		}
		targetGroups[side] = aws.ToString(tg.TargetGroups[0].TargetGroupArn)
	}
	forward := func() []elbv2types.Action {
		return []elbv2types.Action{{
			Type: elbv2types.ActionTypeEnumForward,
			ForwardConfig: &elbv2types.ForwardActionConfig{TargetGroups: []elbv2types.TargetGroupTuple{
				{TargetGroupArn: aws.String(targetGroups["stable"]), Weight: aws.Int32(100)},
				{TargetGroupArn: aws.String(targetGroups["canary"]), Weight: aws.Int32(0)},
			}},
		}}
	}

	listener, err := client.CreateListener(ctx, &elbv2.CreateListenerInput{
		LoadBalancerArn: aws.String(lbARN),
		Protocol:        elbv2types.ProtocolEnumHttp,
		Port:            aws.Int32(80),
		DefaultActions:  forward(),
	})
	if err != nil {
		t.Fatalf("labtest: create listener: %v", err)
	}
	listenerARN = aws.ToString(listener.Listeners[0].ListenerArn)

	rule, err := client.CreateRule(ctx, &elbv2.CreateRuleInput{
		ListenerArn: aws.String(listenerARN),
		Priority:    aws.Int32(10),
		Conditions: []elbv2types.RuleCondition{{
			Field:             aws.String("path-pattern"),
			PathPatternConfig: &elbv2types.PathPatternConditionConfig{Values: []string{"/canary/*"}},
		}},
		Actions: forward(),
	})
	if err != nil {
		t.Fatalf("labtest: create listener rule: %v", err)
	}
	ruleARN = aws.ToString(rule.Rules[0].RuleArn)
	return listenerARN, ruleARN, targetGroups
}

// CreateVPC creates a VPC through moto's EC2 query API and returns its ID.
func CreateVPC(t testing.TB, endpoint, cidr string) string {
	t.Helper()
	var out struct {
		VpcID string `xml:"vpc>vpcId"`
	}
	ec2Query(t, endpoint, url.Values{"Action": {"CreateVpc"}, "CidrBlock": {cidr}}, &out)
	if out.VpcID == "" {
		t.Fatalf("labtest: ec2 CreateVpc returned no vpcId")
	}
	return out.VpcID
}

// CreateSubnet creates a subnet of a VPC in an availability zone through
// moto's EC2 query API and returns its ID.
func CreateSubnet(t testing.TB, endpoint, vpcID, cidr, zone string) string {
	t.Helper()
	var out struct {
		SubnetID string `xml:"subnet>subnetId"`
	}
	ec2Query(t, endpoint, url.Values{
		"Action":           {"CreateSubnet"},
		"VpcId":            {vpcID},
		"CidrBlock":        {cidr},
		"AvailabilityZone": {zone},
	}, &out)
	if out.SubnetID == "" {
		t.Fatalf("labtest: ec2 CreateSubnet returned no subnetId")
	}
	return out.SubnetID
}

// ec2Query calls an action of EC2's query API by hand: the SDK's EC2
// module takes minutes to compile, and the fixtures need two calls of it.
// moto does not check signatures; it reads the service and region from
// the Authorization header's credential scope.
func ec2Query(t testing.TB, endpoint string, params url.Values, out any) {
	t.Helper()
	action := params.Get("Action")
	params.Set("Version", "2016-11-15")
	ctx, cancel := fixtureContext()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/", strings.NewReader(params.Encode()))
	if err != nil {
		t.Fatalf("labtest: ec2 %s: %v", action, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set("Authorization", fmt.Sprintf(
		"AWS4-HMAC-SHA256 Credential=testing/%s/%s/ec2/aws4_request, SignedHeaders=host, Signature=0",
		time.Now().UTC().Format("20060102"), MotoRegion))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("labtest: ec2 %s: %v", action, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("labtest: ec2 %s: %v", action, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("labtest: ec2 %s: %s: %s", action, resp.Status, tail(string(body), 2000))
	}
	if err := xml.Unmarshal(body, out); err != nil {
		t.Fatalf("labtest: ec2 %s: decode %q: %v", action, tail(string(body), 2000), err)
	}
}

func fixtureContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func randomSuffix(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("labtest: %v", err)
	}
	return hex.EncodeToString(b)
}

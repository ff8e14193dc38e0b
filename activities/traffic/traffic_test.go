package traffic_test

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbv2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/activities/traffic"
	"github.com/keelson-dev/keelson/internal/labtest"
	"github.com/keelson-dev/keelson/release"
)

// start starts moto and the activities against it.
func start(t *testing.T) (endpoint string, a *traffic.Activities) {
	t.Helper()
	labtest.FakeAWSEnv(t)
	endpoint = labtest.StartMoto(t)
	a, err := traffic.New(context.Background(), traffic.Config{Endpoint: endpoint})
	require.NoError(t, err)
	return endpoint, a
}

// set sets w, checks the result and reads the weights back separately.
func set(t *testing.T, a *traffic.Activities, target traffic.Target, w traffic.Weights, want traffic.Weights, changed bool) {
	t.Helper()
	ctx := context.Background()
	res, err := a.SetWeights(ctx, traffic.SetInput{Target: target, Weights: w})
	require.NoError(t, err)
	require.Equal(t, want, res.After, "after")
	require.Equal(t, changed, res.Changed, "changed")
	got, err := a.GetWeights(ctx, target)
	require.NoError(t, err)
	require.Equal(t, want, got, "read back")
}

func requireErrorType(t *testing.T, err error, errType string) {
	t.Helper()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	// Temporal reads the type and retryability from the returned error
	// itself, so it must be the application error, not wrap one.
	require.True(t, errors.As(err, &appErr), "error %v is not an application error", err)
	require.Same(t, appErr, err, "application error is wrapped: %v", err)
	require.Equal(t, errType, appErr.Type(), "%v", err)
	require.True(t, appErr.NonRetryable(), "%v", err)
	t.Logf("error as expected: %v", err)
}

func TestRoute53Sides(t *testing.T) {
	endpoint, a := start(t)
	ctx := context.Background()
	zoneID := labtest.Route53Zone(t, endpoint, "example.test.")
	stable := release.WeightedRecord{SetIdentifier: "demo-stable", Value: "stable.demo.example.test"}
	canary := release.WeightedRecord{SetIdentifier: "demo-canary", Value: "canary.demo.example.test"}
	labtest.Route53Weighted(t, endpoint, zoneID, "demo.example.test", "CNAME",
		map[string]release.WeightedRecord{"stable": stable, "canary": canary},
		map[string]int{"stable": 100, "canary": 0})
	// A neighbour record of another name, which must not be taken for ours.
	labtest.Route53Weighted(t, endpoint, zoneID, "demo2.example.test", "CNAME",
		map[string]release.WeightedRecord{"stable": stable}, map[string]int{"stable": 7})

	rt := release.Traffic{Route53: &release.Route53Traffic{
		HostedZoneID: zoneID, Record: "demo.example.test", Stable: stable, Canary: canary,
	}}
	target := traffic.SidesTarget("us-east-1", rt)

	got, err := a.GetWeights(ctx, target)
	require.NoError(t, err)
	require.Equal(t, traffic.Weights{"stable": 100, "canary": 0}, got)

	set(t, a, target, traffic.Weights{"stable": 90, "canary": 10}, traffic.Weights{"stable": 90, "canary": 10}, true)
	set(t, a, target, traffic.Weights{"stable": 50, "canary": 50}, traffic.Weights{"stable": 50, "canary": 50}, true)
	set(t, a, target, traffic.Weights{"stable": 0, "canary": 100}, traffic.Weights{"stable": 0, "canary": 100}, true)
	set(t, a, target, traffic.Weights{"stable": 0, "canary": 100}, traffic.Weights{"stable": 0, "canary": 100}, false)
	// A key not given keeps its weight.
	set(t, a, target, traffic.Weights{"stable": 255}, traffic.Weights{"stable": 255, "canary": 100}, true)

	t.Run("zone by name", func(t *testing.T) {
		byName := rt
		r := *rt.Route53
		r.HostedZoneID, r.HostedZone = "", "example.test" // no trailing dot
		byName.Route53 = &r
		target := traffic.SidesTarget("", byName)
		set(t, a, target, traffic.Weights{"stable": 100, "canary": 0}, traffic.Weights{"stable": 100, "canary": 0}, true)
	})

	t.Run("the record keeps its value and TTL", func(t *testing.T) {
		p, err := a.Provider(ctx, target)
		require.NoError(t, err)
		require.NoError(t, p.SetWeights(ctx, traffic.Weights{"canary": 3}))
		w, err := p.Weights(ctx)
		require.NoError(t, err)
		require.Equal(t, traffic.Weights{"stable": 100, "canary": 3}, w)
		out, err := route53.NewFromConfig(labtest.MotoConfig(endpoint)).ListResourceRecordSets(ctx,
			&route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zoneID)})
		require.NoError(t, err)
		var seen int
		for _, rr := range out.ResourceRecordSets {
			if aws.ToString(rr.SetIdentifier) == canary.SetIdentifier && aws.ToString(rr.Name) == "demo.example.test." {
				seen++
				require.Equal(t, int64(3), aws.ToInt64(rr.Weight))
				require.Equal(t, int64(30), aws.ToInt64(rr.TTL))
				require.Len(t, rr.ResourceRecords, 1)
				require.Equal(t, canary.Value, aws.ToString(rr.ResourceRecords[0].Value))
			}
		}
		require.Equal(t, 1, seen)
		// The neighbour is untouched.
		other := traffic.SidesTarget("", release.Traffic{Route53: &release.Route53Traffic{
			HostedZoneID: zoneID, Record: "demo2.example.test.", Stable: stable, Canary: stable,
		}})
		w, err = a.GetWeights(ctx, other)
		require.NoError(t, err)
		require.Equal(t, traffic.Weights{"stable": 7, "canary": 7}, w)
	})

	t.Run("missing record", func(t *testing.T) {
		r := *rt.Route53
		r.Canary.SetIdentifier = "demo-nope"
		_, err := a.SetWeights(ctx, traffic.SetInput{
			Target:  traffic.SidesTarget("", release.Traffic{Route53: &r}),
			Weights: traffic.Weights{"stable": 90, "canary": 10},
		})
		requireErrorType(t, err, traffic.ErrTypeTargetMissing)
	})
	t.Run("missing record type", func(t *testing.T) {
		r := *rt.Route53
		r.Type = "A"
		_, err := a.GetWeights(ctx, traffic.SidesTarget("", release.Traffic{Route53: &r}))
		requireErrorType(t, err, traffic.ErrTypeTargetMissing)
	})
	t.Run("missing zone name", func(t *testing.T) {
		r := *rt.Route53
		r.HostedZoneID, r.HostedZone = "", "nope.test"
		_, err := a.SetWeights(ctx, traffic.SetInput{
			Target:  traffic.SidesTarget("", release.Traffic{Route53: &r}),
			Weights: traffic.Weights{"canary": 10},
		})
		requireErrorType(t, err, traffic.ErrTypeTargetMissing)
	})
	t.Run("missing zone id", func(t *testing.T) {
		r := *rt.Route53
		r.HostedZoneID = "ZNOSUCHZONE"
		_, err := a.GetWeights(ctx, traffic.SidesTarget("", release.Traffic{Route53: &r}))
		requireErrorType(t, err, traffic.ErrTypeTargetMissing)
	})
	t.Run("weight out of range", func(t *testing.T) {
		_, err := a.SetWeights(ctx, traffic.SetInput{Target: target, Weights: traffic.Weights{"canary": 256}})
		requireErrorType(t, err, traffic.ErrTypeTargetInvalid)
	})
	t.Run("unknown key", func(t *testing.T) {
		_, err := a.SetWeights(ctx, traffic.SetInput{Target: target, Weights: traffic.Weights{"preview": 1}})
		requireErrorType(t, err, traffic.ErrTypeTargetInvalid)
	})
	t.Run("no provider", func(t *testing.T) {
		_, err := a.GetWeights(ctx, traffic.SidesTarget("", release.Traffic{}))
		requireErrorType(t, err, traffic.ErrTypeTargetInvalid)
	})
}

func TestRoute53Regions(t *testing.T) {
	endpoint, a := start(t)
	zoneID := labtest.Route53Zone(t, endpoint, "example.test")
	f := release.Failover{
		HostedZone: "example.test.",
		Record:     "api.example.test",
		Regions: []release.FailoverRecord{
			{Region: "us-east-1", SetIdentifier: "use1", Value: "api.us-east-1.example.test", Weight: 100},
			{Region: "eu-west-1", SetIdentifier: "euw1", Value: "api.eu-west-1.example.test", Weight: 100},
			{Region: "ap-south-1", SetIdentifier: "aps1", Value: "api.ap-south-1.example.test", Weight: 50},
		},
		Check: "healthy",
	}
	records := map[string]release.WeightedRecord{}
	weights := map[string]int{}
	for _, r := range f.Regions {
		records[r.Region] = release.WeightedRecord{SetIdentifier: r.SetIdentifier, Value: r.Value}
		weights[r.Region] = r.Weight
	}
	labtest.Route53Weighted(t, endpoint, zoneID, f.Record, "", records, weights)

	target := traffic.RegionsTarget("", f)
	set(t, a, target, traffic.Weights{"eu-west-1": 0},
		traffic.Weights{"us-east-1": 100, "eu-west-1": 0, "ap-south-1": 50}, true)
	set(t, a, target, traffic.Weights{"eu-west-1": 100, "ap-south-1": 0},
		traffic.Weights{"us-east-1": 100, "eu-west-1": 100, "ap-south-1": 0}, true)
}

func TestELBv2(t *testing.T) {
	endpoint, a := start(t)
	ctx := context.Background()
	listenerARN, ruleARN, tgs := labtest.ELBv2Listener(t, endpoint)
	client := elbv2.NewFromConfig(labtest.MotoConfig(endpoint))

	for _, tc := range []struct {
		name    string
		traffic release.ELBv2Traffic
	}{
		{"listener", release.ELBv2Traffic{ListenerARN: listenerARN}},
		{"rule", release.ELBv2Traffic{ListenerARN: listenerARN, RuleARN: ruleARN}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			et := tc.traffic
			et.StableTargetGroup, et.CanaryTargetGroup = tgs["stable"], tgs["canary"]
			target := traffic.SidesTarget(labtest.MotoRegion, release.Traffic{ELBv2: &et})

			got, err := a.GetWeights(ctx, target)
			require.NoError(t, err)
			require.Equal(t, traffic.Weights{"stable": 100, "canary": 0}, got)

			set(t, a, target, traffic.Weights{"stable": 90, "canary": 10}, traffic.Weights{"stable": 90, "canary": 10}, true)
			set(t, a, target, traffic.Weights{"stable": 50, "canary": 50}, traffic.Weights{"stable": 50, "canary": 50}, true)
			set(t, a, target, traffic.Weights{"stable": 0, "canary": 100}, traffic.Weights{"stable": 0, "canary": 100}, true)
			set(t, a, target, traffic.Weights{"stable": 0, "canary": 100}, traffic.Weights{"stable": 0, "canary": 100}, false)
			set(t, a, target, traffic.Weights{"stable": 999}, traffic.Weights{"stable": 999, "canary": 100}, true)

			_, err = a.SetWeights(ctx, traffic.SetInput{Target: target, Weights: traffic.Weights{"canary": 1000}})
			requireErrorType(t, err, traffic.ErrTypeTargetInvalid)

			missingTG := et
			missingTG.CanaryTargetGroup = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/nope/0123456789abcdef"
			_, err = a.SetWeights(ctx, traffic.SetInput{
				Target:  traffic.SidesTarget(labtest.MotoRegion, release.Traffic{ELBv2: &missingTG}),
				Weights: traffic.Weights{"canary": 10},
			})
			requireErrorType(t, err, traffic.ErrTypeTargetMissing)
		})
	}

	// The listener and the rule kept the rest of their settings.
	ls, err := client.DescribeListeners(ctx, &elbv2.DescribeListenersInput{ListenerArns: []string{listenerARN}})
	require.NoError(t, err)
	require.Equal(t, int32(80), aws.ToInt32(ls.Listeners[0].Port))
	require.Equal(t, "HTTP", string(ls.Listeners[0].Protocol))
	rs, err := client.DescribeRules(ctx, &elbv2.DescribeRulesInput{RuleArns: []string{ruleARN}})
	require.NoError(t, err)
	require.Equal(t, "10", aws.ToString(rs.Rules[0].Priority))
	require.Len(t, rs.Rules[0].Conditions, 1)
	require.Equal(t, "path-pattern", aws.ToString(rs.Rules[0].Conditions[0].Field))

	t.Run("other actions kept", func(t *testing.T) {
		out, err := client.CreateRule(ctx, &elbv2.CreateRuleInput{
			ListenerArn: aws.String(listenerARN),
			Priority:    aws.Int32(20),
			Conditions: []elbv2types.RuleCondition{{
				Field:            aws.String("host-header"),
				HostHeaderConfig: &elbv2types.HostHeaderConditionConfig{Values: []string{"login.example.test"}},
			}},
			Actions: []elbv2types.Action{
				{
					Type:  elbv2types.ActionTypeEnumAuthenticateOidc,
					Order: aws.Int32(1),
					AuthenticateOidcConfig: &elbv2types.AuthenticateOidcActionConfig{
						Issuer:                aws.String("https://idp.example.test"),
						AuthorizationEndpoint: aws.String("https://idp.example.test/authorize"),
						TokenEndpoint:         aws.String("https://idp.example.test/token"),
						UserInfoEndpoint:      aws.String("https://idp.example.test/userinfo"),
						ClientId:              aws.String("keelson"),
						ClientSecret:          aws.String("secret"),
					},
				},
				{
					Type:  elbv2types.ActionTypeEnumForward,
					Order: aws.Int32(2),
					ForwardConfig: &elbv2types.ForwardActionConfig{TargetGroups: []elbv2types.TargetGroupTuple{
						{TargetGroupArn: aws.String(tgs["stable"]), Weight: aws.Int32(1)},
						{TargetGroupArn: aws.String(tgs["canary"]), Weight: aws.Int32(0)},
					}},
				},
			},
		})
		require.NoError(t, err)
		rule := aws.ToString(out.Rules[0].RuleArn)
		target := traffic.Target{AWSRegion: labtest.MotoRegion, ELBv2: &traffic.ELBv2Target{RuleARN: rule, TargetGroups: tgs}}
		set(t, a, target, traffic.Weights{"stable": 80, "canary": 20}, traffic.Weights{"stable": 80, "canary": 20}, true)

		rs, err := client.DescribeRules(ctx, &elbv2.DescribeRulesInput{RuleArns: []string{rule}})
		require.NoError(t, err)
		actions := rs.Rules[0].Actions
		require.Len(t, actions, 2)
		require.Equal(t, elbv2types.ActionTypeEnumAuthenticateOidc, actions[0].Type)
		require.Equal(t, "https://idp.example.test", aws.ToString(actions[0].AuthenticateOidcConfig.Issuer))
		require.Equal(t, int32(1), aws.ToInt32(actions[0].Order))
		require.Equal(t, int32(2), aws.ToInt32(actions[1].Order))
		require.Equal(t, "login.example.test", rs.Rules[0].Conditions[0].HostHeaderConfig.Values[0])
	})

	t.Run("missing listener", func(t *testing.T) {
		_, err := a.GetWeights(ctx, traffic.Target{ELBv2: &traffic.ELBv2Target{
			ListenerARN:  listenerARN + "0",
			TargetGroups: tgs,
		}})
		requireErrorType(t, err, traffic.ErrTypeTargetMissing)
	})
	t.Run("missing rule", func(t *testing.T) {
		_, err := a.SetWeights(ctx, traffic.SetInput{
			Target:  traffic.Target{ELBv2: &traffic.ELBv2Target{RuleARN: ruleARN + "0", TargetGroups: tgs}},
			Weights: traffic.Weights{"canary": 1},
		})
		requireErrorType(t, err, traffic.ErrTypeTargetMissing)
	})
}

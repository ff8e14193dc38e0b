package traffic

import (
	"context"
	"log/slog"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// ELBv2MaxWeight is the highest weight of a target group in a forward action.
const ELBv2MaxWeight = 999

// elbv2Provider sets the weights of target groups in the forward action of
// a listener's default actions or of a listener rule. The other actions,
// the other target groups' weights, stickiness, the rule's conditions and
// the listener's port, protocol and certificates stay as they are.
type elbv2Provider struct {
	client *elbv2.Client
	t      ELBv2Target
}

func newELBv2Provider(client *elbv2.Client, t ELBv2Target) (*elbv2Provider, error) {
	if t.ListenerARN == "" && t.RuleARN == "" {
		return nil, invalid("elbv2 target has neither listenerArn nor ruleArn")
	}
	if len(t.TargetGroups) == 0 {
		return nil, invalid("elbv2 target %s has no target groups", describeELBv2(t))
	}
	return &elbv2Provider{client: client, t: t}, nil
}

func (p *elbv2Provider) Weights(ctx context.Context) (Weights, error) {
	actions, err := p.actions(ctx)
	if err != nil {
		return nil, err
	}
	i, err := p.forward(actions)
	if err != nil {
		return nil, err
	}
	byARN := forwardWeights(actions[i])
	w := make(Weights, len(p.t.TargetGroups))
	for _, k := range slices.Sorted(maps.Keys(p.t.TargetGroups)) {
		arn := p.t.TargetGroups[k]
		weight, ok := byARN[arn]
		if !ok {
			return nil, missing("target group %s (%s) is not in the forward action of %s", arn, k, p.describe())
		}
		w[k] = weight
	}
	return w, nil
}

func (p *elbv2Provider) SetWeights(ctx context.Context, w Weights) error {
	byARN := make(map[string]int32, len(w))
	for _, k := range slices.Sorted(maps.Keys(w)) {
		arn, ok := p.t.TargetGroups[k]
		if !ok {
			return invalid("key %q is not one of the target groups of %s", k, p.describe())
		}
		byARN[arn] = int32(w[k])
	}
	if err := checkRange(w, ELBv2MaxWeight, "elbv2"); err != nil {
		return err
	}
	actions, err := p.actions(ctx)
	if err != nil {
		return err
	}
	i, err := p.forward(actions)
	if err != nil {
		return err
	}
	current := forwardWeights(actions[i])
	for _, k := range slices.Sorted(maps.Keys(w)) {
		if _, ok := current[p.t.TargetGroups[k]]; !ok {
			return missing("target group %s (%s) is not in the forward action of %s", p.t.TargetGroups[k], k, p.describe())
		}
	}

	fwd := actions[i]
	var cfg types.ForwardActionConfig
	if fwd.ForwardConfig != nil {
		cfg.TargetGroupStickinessConfig = fwd.ForwardConfig.TargetGroupStickinessConfig
	}
	for _, arn := range forwardARNs(fwd) {
		weight, ok := byARN[arn]
		if !ok {
			weight = int32(current[arn])
		}
		cfg.TargetGroups = append(cfg.TargetGroups, types.TargetGroupTuple{
			TargetGroupArn: aws.String(arn),
			Weight:         aws.Int32(weight),
		})
	}
	fwd.ForwardConfig = &cfg
	// AWS accepts TargetGroupArn beside a ForwardConfig only when both
	// name the same single target group.
	fwd.TargetGroupArn = nil
	actions[i] = fwd
	for j := range actions {
		actions[j] = resendable(actions[j])
	}

	if p.t.RuleARN != "" {
		_, err = p.client.ModifyRule(ctx, &elbv2.ModifyRuleInput{RuleArn: aws.String(p.t.RuleARN), Actions: actions})
	} else {
		_, err = p.client.ModifyListener(ctx, &elbv2.ModifyListenerInput{ListenerArn: aws.String(p.t.ListenerARN), DefaultActions: actions})
	}
	if err != nil {
		return elbv2Error(err, "change weights of "+p.describe())
	}
	slog.InfoContext(ctx, "elbv2 weights changed", "target", p.describe(), "weights", w.String())
	return nil
}

// actions reads the rule's actions or the listener's default actions.
func (p *elbv2Provider) actions(ctx context.Context) ([]types.Action, error) {
	if p.t.RuleARN != "" {
		out, err := p.client.DescribeRules(ctx, &elbv2.DescribeRulesInput{RuleArns: []string{p.t.RuleARN}})
		if err != nil {
			return nil, elbv2Error(err, "read "+p.describe())
		}
		if len(out.Rules) != 1 {
			return nil, missing("no %s", p.describe())
		}
		return out.Rules[0].Actions, nil
	}
	out, err := p.client.DescribeListeners(ctx, &elbv2.DescribeListenersInput{ListenerArns: []string{p.t.ListenerARN}})
	if err != nil {
		return nil, elbv2Error(err, "read "+p.describe())
	}
	if len(out.Listeners) != 1 {
		return nil, missing("no %s", p.describe())
	}
	return out.Listeners[0].DefaultActions, nil
}

// forward is the index of the forward action (there is at most one: it
// ends the list).
func (p *elbv2Provider) forward(actions []types.Action) (int, error) {
	for i, a := range actions {
		if a.Type == types.ActionTypeEnumForward {
			return i, nil
		}
	}
	return 0, missing("%s has no forward action", p.describe())
}

func (p *elbv2Provider) describe() string {
	return describeELBv2(p.t)
}

func describeELBv2(t ELBv2Target) string {
	if t.RuleARN != "" {
		return "listener rule " + t.RuleARN
	}
	return "listener " + t.ListenerARN
}

// forwardARNs lists a forward action's target groups in its order: those of
// its ForwardConfig, or its single TargetGroupArn.
func forwardARNs(a types.Action) []string {
	if a.ForwardConfig != nil && len(a.ForwardConfig.TargetGroups) > 0 {
		arns := make([]string, 0, len(a.ForwardConfig.TargetGroups))
		for _, tg := range a.ForwardConfig.TargetGroups {
			arns = append(arns, aws.ToString(tg.TargetGroupArn))
		}
		return arns
	}
	if a.TargetGroupArn != nil {
		return []string{*a.TargetGroupArn}
	}
	return nil
}

// forwardWeights maps a forward action's target groups to their weights. A
// target group without a weight has weight 1, as AWS gives it.
func forwardWeights(a types.Action) map[string]int {
	w := map[string]int{}
	if a.ForwardConfig != nil && len(a.ForwardConfig.TargetGroups) > 0 {
		for _, tg := range a.ForwardConfig.TargetGroups {
			weight := 1
			if tg.Weight != nil {
				weight = int(*tg.Weight)
			}
			w[aws.ToString(tg.TargetGroupArn)] = weight
		}
		return w
	}
	if a.TargetGroupArn != nil {
		w[*a.TargetGroupArn] = 1
	}
	return w
}

// resendable makes an action as read fit to be sent back unchanged:
// DescribeListeners and DescribeRules never return an OIDC client secret,
// and without one ModifyListener and ModifyRule need to be told to keep the
// existing secret.
func resendable(a types.Action) types.Action {
	if a.AuthenticateOidcConfig != nil && a.AuthenticateOidcConfig.ClientSecret == nil {
		oidc := *a.AuthenticateOidcConfig
		oidc.UseExistingClientSecret = aws.Bool(true)
		a.AuthenticateOidcConfig = &oidc
	}
	return a
}

func elbv2Error(err error, what string) error {
	return notFound(err, what, "ListenerNotFound", "RuleNotFound", "TargetGroupNotFound")
}

//! Values AWS refuses when `apply` sends them but neither `plan` nor the provider
//! checks: names too long or with characters the service does not allow, descriptions
//! EC2 refuses, paths IAM refuses.
//!
//! Each value is evaluated as far as the configuration allows: literals and templates,
//! `var.x` (its default, or the longest value its `validation` admits), `local.x`,
//! another resource's argument, a called module's variables from its call. What is only
//! known at apply time (an ARN, `each.value`) is left unknown: a name with an unknown
//! part is checked for its known characters, and for its length when even its known
//! part is too long.

use std::collections::BTreeMap;

use hcl::{Block, Body, Expression, TraversalOperator};

use super::hcl_reader::{attr, literal, object_key, Module};

/// What a service accepts for one kind of value.
pub struct Limit {
    pub what: &'static str,
    min: usize,
    max: usize,
    allowed: fn(char) -> bool,
    allowed_text: &'static str,
    /// A rule beyond length and characters: the problem, if the value breaks it.
    other: fn(&str) -> Option<&'static str>,
}

fn any(_: char) -> bool {
    true
}

fn none(_: &str) -> Option<&'static str> {
    None
}

/// `[\w+=,.@-]`
fn iam_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// EC2 allows only `a-zA-Z0-9`, spaces and `._-:/()#,@[]+=&;{}!$*` in security group
/// names and in security group and rule descriptions.
fn ec2_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c)
}

// https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html
// RoleName: 1-64 characters of [\w+=,.@-]+.
const IAM_ROLE_NAME: Limit = Limit {
    what: "IAM role name",
    min: 1,
    max: 64,
    allowed: iam_name_char,
    allowed_text: "a-zA-Z0-9 and _+=,.@-",
    other: none,
};
// https://docs.aws.amazon.com/IAM/latest/APIReference/API_PutRolePolicy.html and
// https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreatePolicy.html
// PolicyName: 1-128 characters of [\w+=,.@-]+.
const IAM_POLICY_NAME: Limit = Limit {
    what: "IAM policy name",
    max: 128,
    ..IAM_ROLE_NAME
};
// CreateRole and CreatePolicy: Path is `/` or begins and ends with `/`, 1-512
// characters from `!` (U+0021) to DEL (U+007F).
const IAM_PATH: Limit = Limit {
    what: "IAM path",
    min: 1,
    max: 512,
    allowed: |c| ('\u{21}'..='\u{7f}').contains(&c),
    allowed_text: "U+0021 to U+007F",
    other: |path| {
        (!path.starts_with('/') || !path.ends_with('/')).then_some("must begin and end with /")
    },
};
// CreateRole: Description is at most 1000 characters of
// [\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF]*.
const IAM_ROLE_DESCRIPTION: Limit = Limit {
    what: "IAM role description",
    min: 0,
    max: 1000,
    allowed: |c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{a1}'..='\u{ff}'),
    allowed_text: "tab, newline and U+0020 to U+007E, U+00A1 to U+00FF",
    other: none,
};
// https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html
// FunctionName: "If you specify only the function name, it is limited to 64 characters
// in length", of [a-zA-Z0-9-_]+; Description: at most 256 characters.
const LAMBDA_FUNCTION_NAME: Limit = Limit {
    what: "Lambda function name",
    min: 1,
    max: 64,
    allowed: |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
    allowed_text: "a-zA-Z0-9, - and _",
    other: none,
};
const LAMBDA_DESCRIPTION: Limit = Limit {
    what: "Lambda function description",
    min: 0,
    max: 256,
    allowed: any,
    allowed_text: "",
    other: none,
};
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html
// "Table names and index names must be between 3 and 255 characters long, and can
// contain only the following characters: a-z A-Z 0-9 _ - ."
const DYNAMODB_NAME: Limit = Limit {
    what: "DynamoDB table or index name",
    min: 3,
    max: 255,
    allowed: |c| c.is_ascii_alphanumeric() || "_-.".contains(c),
    allowed_text: "a-zA-Z0-9, _, - and .",
    other: none,
};
// https://docs.aws.amazon.com/step-functions/latest/apireference/API_CreateStateMachine.html
// name: 1-80 characters; no white space, brackets, wildcards, "#%\^|~`$&,;:/ or control
// characters, and "to enable logging with CloudWatch Logs, the name should only contain
// 0-9, A-Z, a-z, - and _" (ours logs).
const STATE_MACHINE_NAME: Limit = Limit {
    what: "Step Functions state machine name",
    min: 1,
    max: 80,
    allowed: |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
    allowed_text: "0-9, A-Z, a-z, - and _ (a state machine that logs to CloudWatch Logs)",
    other: none,
};
// https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html
// Name: 1-64 characters of [\.\-_A-Za-z0-9]+; Description: at most 512 characters.
const EVENT_RULE_NAME: Limit = Limit {
    what: "EventBridge rule name",
    min: 1,
    max: 64,
    allowed: |c| c.is_ascii_alphanumeric() || ".-_".contains(c),
    allowed_text: "A-Za-z0-9, ., - and _",
    other: none,
};
const EVENT_RULE_DESCRIPTION: Limit = Limit {
    what: "EventBridge rule description",
    min: 0,
    max: 512,
    allowed: any,
    allowed_text: "",
    other: none,
};
// https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_CreateEventBus.html
// Name: 1-256 characters of [/\.\-_A-Za-z0-9]+; "Custom event bus names can't contain
// the / character", nor be `default`.
const EVENT_BUS_NAME: Limit = Limit {
    what: "EventBridge event bus name",
    min: 1,
    max: 256,
    allowed: |c| c.is_ascii_alphanumeric() || ".-_".contains(c),
    allowed_text: "A-Za-z0-9, ., - and _",
    other: |name| (name == "default").then_some("is the account's default bus"),
};
// https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html
// logGroupName: 1-512 characters of a-z, A-Z, 0-9, _, -, /, . and #.
const LOG_GROUP_NAME: Limit = Limit {
    what: "CloudWatch Logs log group name",
    min: 1,
    max: 512,
    allowed: |c| c.is_ascii_alphanumeric() || "_-/.#".contains(c),
    allowed_text: "a-zA-Z0-9, _, -, /, . and #",
    other: none,
};
// https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateCluster.html
// clusterName: "Up to 255 letters (uppercase and lowercase), numbers, underscores, and
// hyphens are allowed."
const ECS_CLUSTER_NAME: Limit = Limit {
    what: "ECS cluster name",
    min: 1,
    max: 255,
    allowed: |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
    allowed_text: "letters, numbers, _ and -",
    other: none,
};
// https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RegisterTaskDefinition.html
// family: "Up to 255 letters (uppercase and lowercase), numbers, underscores, and
// hyphens are allowed." https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateService.html
// serviceName: the same.
const ECS_TASK_FAMILY: Limit = Limit {
    what: "ECS task definition family",
    ..ECS_CLUSTER_NAME
};
const ECS_SERVICE_NAME: Limit = Limit {
    what: "ECS service name",
    ..ECS_CLUSTER_NAME
};
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
// 3-63 characters of a-z, 0-9, . and -, beginning and ending with a letter or digit,
// no two adjacent periods, not an IP address, not beginning with xn-- or sthree-, not
// ending with -s3alias or --ol-s3. A bucket_prefix gets a 26-character suffix, so it
// holds at most 37 (the AWS provider's limit); its end is not the name's.
fn s3_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
}
fn s3_start(name: &str) -> Option<&'static str> {
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        Some("does not begin with a letter or digit")
    } else if name.starts_with("xn--") || name.starts_with("sthree-") {
        Some("begins with a prefix S3 reserves")
    } else if name.contains("..") {
        Some("has two adjacent periods")
    } else {
        None
    }
}
const S3_BUCKET_NAME: Limit = Limit {
    what: "S3 bucket name",
    min: 3,
    max: 63,
    allowed: s3_char,
    allowed_text: "a-z, 0-9, . and -",
    other: |name| {
        s3_start(name).or_else(|| {
            if !name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
                Some("does not end with a letter or digit")
            } else if name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
                Some("ends with a suffix S3 reserves")
            } else if name.split('.').count() == 4
                && name.split('.').all(|p| p.parse::<u8>().is_ok())
            {
                Some("is an IP address")
            } else {
                None
            }
        })
    },
};
const S3_BUCKET_PREFIX: Limit = Limit {
    what: "S3 bucket name prefix",
    min: 1,
    max: 37,
    other: s3_start,
    ..S3_BUCKET_NAME
};
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html
// GroupName and GroupDescription: up to 255 characters of a-z, A-Z, 0-9, spaces and
// ._-:/()#,@[]+=&;{}!$*; a name "can't start with sg-". The same description rule holds
// for the rules' descriptions (IpRange, IpPermission, AuthorizeSecurityGroupIngress).
const SECURITY_GROUP_NAME: Limit = Limit {
    what: "security group name",
    min: 1,
    max: 255,
    allowed: ec2_char,
    allowed_text: "a-zA-Z0-9, spaces and ._-:/()#,@[]+=&;{}!$*",
    other: |name| name.starts_with("sg-").then_some("starts with sg-"),
};
const EC2_DESCRIPTION: Limit = Limit {
    what: "security group (rule) description",
    min: 0,
    other: none,
    ..SECURITY_GROUP_NAME
};
// https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html
// Name: at most 32 characters, alphanumeric or hyphens, "must not begin or end with a
// hyphen, and must not begin with internal-";
// https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html
// Name: at most 32 characters, alphanumeric or hyphens, not beginning or ending with a
// hyphen.
const LOAD_BALANCER_NAME: Limit = Limit {
    what: "load balancer name",
    min: 1,
    max: 32,
    allowed: |c| c.is_ascii_alphanumeric() || c == '-',
    allowed_text: "alphanumerics and -",
    other: |name| {
        if name.starts_with('-') || name.ends_with('-') {
            Some("begins or ends with a hyphen")
        } else if name.starts_with("internal-") {
            Some("begins with internal-")
        } else {
            None
        }
    },
};
const TARGET_GROUP_NAME: Limit = Limit {
    what: "target group name",
    other: |name| {
        (name.starts_with('-') || name.ends_with('-')).then_some("begins or ends with a hyphen")
    },
    ..LOAD_BALANCER_NAME
};
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html
// QueueName: up to 80 characters, alphanumerics, - and _ (a FIFO queue's ends in .fifo).
const SQS_QUEUE_NAME: Limit = Limit {
    what: "SQS queue name",
    min: 1,
    max: 80,
    allowed: |c| c.is_ascii_alphanumeric() || "-_.".contains(c),
    allowed_text: "alphanumerics, - and _ (and a .fifo suffix)",
    other: |name| {
        let base = name.strip_suffix(".fifo").unwrap_or(name);
        base.contains('.')
            .then_some("has a . outside its .fifo suffix")
    },
};
// https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html
// Name: 1-256 ASCII letters, numbers, _ and - (a FIFO topic's ends in .fifo).
const SNS_TOPIC_NAME: Limit = Limit {
    what: "SNS topic name",
    max: 256,
    ..SQS_QUEUE_NAME
};
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html
// AlarmName: 1-255 characters; AlarmDescription: at most 1024.
const ALARM_NAME: Limit = Limit {
    what: "CloudWatch alarm name",
    min: 1,
    max: 255,
    allowed: |c| !c.is_control(),
    allowed_text: "no control characters",
    other: none,
};
const ALARM_DESCRIPTION: Limit = Limit {
    what: "CloudWatch alarm description",
    min: 0,
    max: 1024,
    ..ALARM_NAME
};
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutDashboard.html
// DashboardName: at most 255 characters of A-Z, a-z, 0-9, - and _.
const DASHBOARD_NAME: Limit = Limit {
    what: "CloudWatch dashboard name",
    min: 1,
    max: 255,
    allowed: |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
    allowed_text: "A-Z, a-z, 0-9, - and _",
    other: none,
};

// https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_budgets_Budget.html
// BudgetName: 1-100 characters; ":" and "\\" and the substring "/action/" are not allowed.
const BUDGET_NAME: Limit = Limit {
    what: "AWS Budgets budget name",
    min: 1,
    max: 100,
    allowed: |c| c != ':' && c != '\\',
    allowed_text: "anything but : and \\",
    other: |name| name.contains("/action/").then_some("contains /action/"),
};

// https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html
// Name: 1-512 characters, "letters, numbers, and the following characters: /_+=.@-";
// a name_prefix gets the AWS provider's 26-character unique suffix. Description: at
// most 2048 characters.
const SECRET_NAME: Limit = Limit {
    what: "Secrets Manager secret name",
    min: 1,
    max: 512,
    allowed: |c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c),
    allowed_text: "a-zA-Z0-9 and /_+=.@-",
    other: none,
};
const SECRET_NAME_PREFIX: Limit = Limit {
    what: "Secrets Manager secret name prefix",
    max: 512 - 26,
    ..SECRET_NAME
};
const SECRET_DESCRIPTION: Limit = Limit {
    what: "Secrets Manager secret description",
    min: 0,
    max: 2048,
    allowed: any,
    allowed_text: "",
    other: none,
};

/// Resource type, path to the value (blocks, then the argument), what it must be.
const RULES: &[(&str, &[&str], &Limit)] = &[
    ("aws_iam_role", &["name"], &IAM_ROLE_NAME),
    ("aws_iam_role", &["path"], &IAM_PATH),
    ("aws_iam_role", &["description"], &IAM_ROLE_DESCRIPTION),
    ("aws_iam_policy", &["name"], &IAM_POLICY_NAME),
    ("aws_iam_policy", &["path"], &IAM_PATH),
    ("aws_iam_role_policy", &["name"], &IAM_POLICY_NAME),
    (
        "aws_lambda_function",
        &["function_name"],
        &LAMBDA_FUNCTION_NAME,
    ),
    ("aws_lambda_function", &["description"], &LAMBDA_DESCRIPTION),
    ("aws_dynamodb_table", &["name"], &DYNAMODB_NAME),
    (
        "aws_dynamodb_table",
        &["global_secondary_index", "name"],
        &DYNAMODB_NAME,
    ),
    (
        "aws_dynamodb_table",
        &["local_secondary_index", "name"],
        &DYNAMODB_NAME,
    ),
    ("aws_sfn_state_machine", &["name"], &STATE_MACHINE_NAME),
    ("aws_cloudwatch_event_rule", &["name"], &EVENT_RULE_NAME),
    (
        "aws_cloudwatch_event_rule",
        &["description"],
        &EVENT_RULE_DESCRIPTION,
    ),
    ("aws_cloudwatch_event_bus", &["name"], &EVENT_BUS_NAME),
    ("aws_cloudwatch_log_group", &["name"], &LOG_GROUP_NAME),
    ("aws_ecs_cluster", &["name"], &ECS_CLUSTER_NAME),
    ("aws_ecs_task_definition", &["family"], &ECS_TASK_FAMILY),
    ("aws_ecs_service", &["name"], &ECS_SERVICE_NAME),
    ("aws_security_group", &["name"], &SECURITY_GROUP_NAME),
    ("aws_security_group", &["description"], &EC2_DESCRIPTION),
    (
        "aws_security_group",
        &["ingress", "description"],
        &EC2_DESCRIPTION,
    ),
    (
        "aws_security_group",
        &["egress", "description"],
        &EC2_DESCRIPTION,
    ),
    (
        "aws_default_security_group",
        &["ingress", "description"],
        &EC2_DESCRIPTION,
    ),
    (
        "aws_default_security_group",
        &["egress", "description"],
        &EC2_DESCRIPTION,
    ),
    (
        "aws_security_group_rule",
        &["description"],
        &EC2_DESCRIPTION,
    ),
    (
        "aws_vpc_security_group_ingress_rule",
        &["description"],
        &EC2_DESCRIPTION,
    ),
    (
        "aws_vpc_security_group_egress_rule",
        &["description"],
        &EC2_DESCRIPTION,
    ),
    ("aws_lb", &["name"], &LOAD_BALANCER_NAME),
    ("aws_alb", &["name"], &LOAD_BALANCER_NAME),
    ("aws_lb_target_group", &["name"], &TARGET_GROUP_NAME),
    ("aws_alb_target_group", &["name"], &TARGET_GROUP_NAME),
    ("aws_s3_bucket", &["bucket"], &S3_BUCKET_NAME),
    ("aws_s3_bucket", &["bucket_prefix"], &S3_BUCKET_PREFIX),
    ("aws_sqs_queue", &["name"], &SQS_QUEUE_NAME),
    ("aws_sns_topic", &["name"], &SNS_TOPIC_NAME),
    ("aws_cloudwatch_metric_alarm", &["alarm_name"], &ALARM_NAME),
    (
        "aws_cloudwatch_metric_alarm",
        &["alarm_description"],
        &ALARM_DESCRIPTION,
    ),
    (
        "aws_cloudwatch_dashboard",
        &["dashboard_name"],
        &DASHBOARD_NAME,
    ),
    ("aws_budgets_budget", &["name"], &BUDGET_NAME),
    ("aws_secretsmanager_secret", &["name"], &SECRET_NAME),
    (
        "aws_secretsmanager_secret",
        &["name_prefix"],
        &SECRET_NAME_PREFIX,
    ),
    (
        "aws_secretsmanager_secret",
        &["description"],
        &SECRET_DESCRIPTION,
    ),
];

/// A string as far as it is known before apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Value(Vec<Option<String>>);

impl Value {
    fn known(text: impl Into<String>) -> Self {
        Value(vec![Some(text.into())])
    }

    fn unknown() -> Self {
        Value(vec![None])
    }

    fn push(&mut self, other: Value) {
        self.0.extend(other.0);
    }

    /// The whole value, when nothing in it is unknown.
    pub fn text(&self) -> Option<String> {
        self.0.iter().map(|p| p.as_deref()).collect()
    }

    /// The known parts.
    fn known_text(&self) -> String {
        self.0.iter().flatten().map(String::as_str).collect()
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: String = self
            .0
            .iter()
            .map(|p| p.as_deref().unwrap_or("${…}"))
            .collect();
        write!(f, "{shown:?}")
    }
}

/// Where `var.x` come from: each variable's value, for one module instance.
type Variables = BTreeMap<String, Value>;

/// One module instance: the module, the values of its variables, its address.
struct Instance<'a> {
    module: &'a Module,
    variables: Variables,
    locals: BTreeMap<String, Expression>,
    resources: BTreeMap<(String, String), &'a Block>,
    prefix: String,
}

impl<'a> Instance<'a> {
    fn new(module: &'a Module, variables: Variables, prefix: String) -> Self {
        Self {
            module,
            variables,
            locals: module.locals(),
            resources: super::schema::typed(module, "resource"),
            prefix,
        }
    }

    fn eval(&self, expr: &Expression, depth: usize) -> Value {
        if depth > 32 {
            return Value::unknown();
        }
        match expr {
            Expression::String(s) => Value::known(s.clone()),
            Expression::Number(n) => Value::known(n.to_string()),
            Expression::Bool(b) => Value::known(b.to_string()),
            Expression::TemplateExpr(t) => {
                let template = hcl::Template::from_expr(t).unwrap_or_else(|e| panic!("{t}: {e}"));
                let mut value = Value::default();
                for element in template.elements() {
                    value.push(match element {
                        hcl::template::Element::Literal(text) => Value::known(text.clone()),
                        hcl::template::Element::Interpolation(i) => self.eval(&i.expr, depth + 1),
                        hcl::template::Element::Directive(_) => Value::unknown(),
                    });
                }
                value
            }
            Expression::Parenthesis(inner) => self.eval(inner, depth + 1),
            Expression::FuncCall(call)
                if call.name.name.as_str() == "tostring" && call.args.len() == 1 =>
            {
                self.eval(&call.args[0], depth + 1)
            }
            Expression::Traversal(t) => {
                let Expression::Variable(root) = &t.expr else {
                    return Value::unknown();
                };
                let names: Vec<&str> = t
                    .operators
                    .iter()
                    .map(|op| match op {
                        TraversalOperator::GetAttr(name) => Some(name.as_str()),
                        _ => None,
                    })
                    .collect::<Option<_>>()
                    .unwrap_or_default();
                match (root.as_str(), names.as_slice()) {
                    ("var", [name]) => self
                        .variables
                        .get(*name)
                        .cloned()
                        .unwrap_or_else(Value::unknown),
                    ("local", [name]) => self
                        .locals
                        .get(*name)
                        .map_or_else(Value::unknown, |e| self.eval(e, depth + 1)),
                    (ty, [name, argument]) => {
                        let block = self.resources.get(&(ty.to_owned(), (*name).to_owned()));
                        // Only a single instance's argument is the value its name reads.
                        match block
                            .map(|b| b.body())
                            .filter(|b| attr(b, "count").is_none() && attr(b, "for_each").is_none())
                        {
                            Some(body) => attr(body, argument)
                                .map_or_else(Value::unknown, |e| self.eval(e, depth + 1)),
                            None => Value::unknown(),
                        }
                    }
                    _ => Value::unknown(),
                }
            }
            _ => Value::unknown(),
        }
    }
}

/// The value each variable of a module takes where nothing sets it: the longest value
/// its `validation` admits, when that is a `regex` this reads, else its default.
fn variable_values(module: &Module) -> Variables {
    let defaults = Instance::new(module, Variables::new(), String::new());
    module
        .blocks("variable")
        .filter_map(|v| {
            let name = v.labels().first()?.as_str().to_owned();
            let longest = v
                .body()
                .blocks()
                .filter(|b| b.identifier() == "validation")
                .filter_map(|b| attr(b.body(), "condition"))
                .find_map(|c| validation_pattern(c, &name))
                .and_then(|pattern| longest_match(&pattern));
            let value = match (longest, attr(v.body(), "default")) {
                (Some(longest), _) => Value::known(longest),
                (None, Some(default)) => defaults.eval(default, 0),
                (None, None) => Value::unknown(),
            };
            Some((name, value))
        })
        .collect()
}

/// `can(regex("<pattern>", var.<name>))` -> the pattern.
fn validation_pattern(condition: &Expression, name: &str) -> Option<String> {
    let Expression::FuncCall(can) = condition else {
        return None;
    };
    let Some(Expression::FuncCall(regex)) = can.args.first() else {
        return None;
    };
    let reads_variable = regex
        .args
        .get(1)
        .is_some_and(|a| a.to_string() == format!("var.{name}"));
    (can.name.name.as_str() == "can" && regex.name.name.as_str() == "regex" && reads_variable)
        .then(|| regex.args.first().and_then(literal).map(str::to_owned))
        .flatten()
}

/// The longest string an anchored pattern of character classes and literals, each with
/// an optional bounded quantifier, matches: `^[a-z][a-z0-9-]{1,30}$` -> 31 characters.
/// Each class is walked punctuation first, then digits, then letters, so that the
/// string holds the characters a name is likeliest to be refused for. `None` for
/// anything else (alternation, groups, unbounded repetition).
pub fn longest_match(pattern: &str) -> Option<String> {
    let body = pattern.strip_prefix('^')?.strip_suffix('$')?;
    let mut chars = body.chars().peekable();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        let class: Vec<char> = match c {
            '[' => {
                let mut members = Vec::new();
                let mut previous = None;
                loop {
                    let c = match chars.next()? {
                        ']' => break,
                        '\\' => chars.next()?,
                        '^' if previous.is_none() && members.is_empty() => return None,
                        c => c,
                    };
                    if c == '-' && previous.is_some() && chars.peek().is_some_and(|n| *n != ']') {
                        let from: char = previous.take()?;
                        let to = match chars.next()? {
                            '\\' => chars.next()?,
                            to => to,
                        };
                        members.extend(from..=to);
                    } else {
                        members.push(c);
                        previous = Some(c);
                    }
                }
                members
            }
            '\\' => match chars.next()? {
                'd' => ('0'..='9').collect(),
                'w' => ('a'..='z')
                    .chain('A'..='Z')
                    .chain('0'..='9')
                    .chain(['_'])
                    .collect(),
                c if c.is_ascii_punctuation() => vec![c],
                _ => return None,
            },
            '(' | ')' | '|' | '.' | '*' | '+' | '?' | '{' => return None,
            c => vec![c],
        };
        let count = match chars.peek() {
            Some('{') => {
                chars.next();
                let quantifier: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let max = quantifier.rsplit(',').next()?;
                max.trim().parse::<usize>().ok()?
            }
            Some('?') => {
                chars.next();
                1
            }
            Some('*' | '+') => return None,
            _ => 1,
        };
        let mut ordered = class.clone();
        ordered.sort_by_key(|c| (c.is_ascii_alphanumeric(), c.is_ascii_alphabetic(), *c));
        ordered.dedup();
        out.extend(ordered.iter().cycle().take(count));
    }
    Some(out)
}

/// The values a path reads in a resource's body: the argument at its end, in the blocks
/// (written or `dynamic`) or lists of objects before it.
fn values_at<'a>(body: &'a Body, path: &[&str], at: &str) -> Vec<(String, &'a Expression)> {
    let [first, rest @ ..] = path else {
        return Vec::new();
    };
    if rest.is_empty() {
        return attr(body, first)
            .map(|e| (at.to_owned(), e))
            .into_iter()
            .collect();
    }
    let mut found = Vec::new();
    for block in body.blocks() {
        let content = match block.identifier() {
            ident if ident == *first => Some(block.body()),
            "dynamic" if block.labels().first().is_some_and(|l| l.as_str() == *first) => block
                .body()
                .blocks()
                .find(|b| b.identifier() == "content")
                .map(Block::body),
            _ => None,
        };
        if let Some(content) = content {
            found.extend(values_at(content, rest, &format!("{at}.{first}")));
        }
    }
    if let (Some(Expression::Array(items)), [field]) = (attr(body, first), rest) {
        for item in items {
            if let Expression::Object(object) = item {
                found.extend(
                    object
                        .iter()
                        .filter(|(k, _)| object_key(k) == *field)
                        .map(|(_, v)| (format!("{at}.{first}"), v)),
                );
            }
        }
    }
    found
}

/// What a value breaks of a limit.
fn problems(value: &Value, limit: &Limit) -> Vec<String> {
    let mut found = Vec::new();
    let known = value.known_text();
    let bad: String = known.chars().filter(|c| !(limit.allowed)(*c)).collect();
    if !bad.is_empty() {
        found.push(format!("has {bad:?}; allowed: {}", limit.allowed_text));
    }
    let length = known.chars().count();
    match value.text() {
        Some(text) => {
            if length > limit.max {
                found.push(format!(
                    "is {length} characters, at most {} allowed",
                    limit.max
                ));
            } else if length < limit.min {
                found.push(format!(
                    "is {length} characters, at least {} needed",
                    limit.min
                ));
            }
            found.extend((limit.other)(&text).map(str::to_owned));
        }
        None if length > limit.max => {
            found.push(format!(
                "is at least {length} characters, at most {} allowed",
                limit.max
            ));
        }
        None => {}
    }
    found
}

/// The values checked, and what AWS would refuse of them.
#[derive(Default)]
pub struct Report {
    /// (address, what, value) of every value checked.
    pub checked: Vec<(String, &'static str, Value)>,
    pub refused: Vec<String>,
}

/// Every value in `module`, and in the modules its calls reach (`children`, by source),
/// that AWS refuses at apply time.
pub fn refused(module: &Module, children: &BTreeMap<String, Module>) -> Report {
    let mut report = Report::default();
    let root = Instance::new(module, variable_values(module), String::new());
    check_instance(&root, &mut report);
    for call in module.blocks("module") {
        let (Some(label), Some(child)) = (
            call.labels().first(),
            attr(call.body(), "source")
                .and_then(literal)
                .and_then(|s| children.get(s)),
        ) else {
            continue;
        };
        let variables = variable_values(child)
            .into_iter()
            .map(|(name, default)| {
                let value = attr(call.body(), &name).map_or(default, |e| root.eval(e, 0));
                (name, value)
            })
            .collect();
        let instance = Instance::new(child, variables, format!("module.{}.", label.as_str()));
        check_instance(&instance, &mut report);
    }
    report.refused.sort();
    report.refused.dedup();
    report
}

fn check_instance(instance: &Instance<'_>, report: &mut Report) {
    for (ty, path, limit) in RULES {
        for block in instance.module.blocks("resource") {
            let [block_ty, name] = block.labels() else {
                continue;
            };
            if block_ty.as_str() != *ty {
                continue;
            }
            let address = format!("{}{ty}.{}", instance.prefix, name.as_str());
            for (at, expr) in values_at(block.body(), path, &address)
                .into_iter()
                .flat_map(|(at, expr)| alternatives(expr).into_iter().map(move |e| (at.clone(), e)))
            {
                let value = instance.eval(expr, 0);
                let argument = path.last().unwrap();
                for problem in problems(&value, limit) {
                    report.refused.push(format!(
                        "{at}: {argument} {value} {problem} ({})",
                        limit.what
                    ));
                }
                report.checked.push((at, limit.what, value));
            }
        }
    }
}

/// The values an expression may take: each result of a conditional (`cond ? a : b`),
/// checked apart.
fn alternatives(expr: &Expression) -> Vec<&Expression> {
    match expr {
        Expression::Conditional(c) => {
            let mut found = alternatives(&c.true_expr);
            found.extend(alternatives(&c.false_expr));
            found
        }
        Expression::Parenthesis(inner) => alternatives(inner),
        other => vec![other],
    }
}

// ---------------------------------------------------------------------------------
// Self-tests: the checks above find what they are meant to, on small modules.

#[cfg(test)]
mod self_tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn an_over_long_role_name_is_found() {
        let root = Module::parse(
            r#"
    variable "name" {
      type    = string
      default = "x"
      validation {
        condition     = can(regex("^[a-z][a-z0-9-]{1,50}$", var.name))
        error_message = "2 to 51 characters."
      }
    }

    resource "aws_iam_role" "long" {
      name = "${var.name}-task-execution"
    }

    resource "aws_iam_role" "spaced" {
      name = "session tasks"
      path = "tasks/"
    }

    resource "aws_iam_role_policy" "fine" {
      name = "calls"
    }

    resource "aws_dynamodb_table" "t" {
      name = "${var.name}-sessions"
      global_secondary_index {
        name = "by"
      }
    }

    module "f" {
      source      = "./modules/function"
      name_prefix = "${var.name}-fn"
      crate       = "task-events"
    }
    "#,
        );
        let function = Module::parse(
            r#"
    variable "name_prefix" {
      type = string
    }
    variable "crate" {
      type = string
    }
    locals {
      function_name = "${var.name_prefix}-${var.crate}"
    }
    resource "aws_iam_role" "this" {
      name = local.function_name
    }
    resource "aws_lambda_function" "this" {
      function_name = local.function_name
    }
    "#,
        );
        let children = BTreeMap::from([("./modules/function".to_owned(), function)]);
        let report = refused(&root, &children);
        // var.name as long as its validation allows: 51 characters.
        let name = longest_match("^[a-z][a-z0-9-]{1,50}$").unwrap();
        assert_eq!(name.len(), 51);
        assert_eq!(
            report.refused,
            vec![
                "aws_dynamodb_table.t.global_secondary_index: name \"by\" is 2 characters, at least 3 needed (DynamoDB table or index name)".to_owned(),
                format!("aws_iam_role.long: name \"{name}-task-execution\" is 66 characters, at most 64 allowed (IAM role name)"),
                "aws_iam_role.spaced: name \"session tasks\" has \" \"; allowed: a-zA-Z0-9 and _+=,.@- (IAM role name)".to_owned(),
                "aws_iam_role.spaced: path \"tasks/\" must begin and end with / (IAM path)".to_owned(),
                format!("module.f.aws_iam_role.this: name \"{name}-fn-task-events\" is 66 characters, at most 64 allowed (IAM role name)"),
                format!("module.f.aws_lambda_function.this: function_name \"{name}-fn-task-events\" is 66 characters, at most 64 allowed (Lambda function name)"),
            ]
        );
    }

    #[test]
    fn a_description_or_name_ec2_refuses_is_found() {
        let long = "x".repeat(256);
        let module = Module::parse(&format!(
            r#"
    resource "aws_security_group" "a" {{
      name        = "sg-users"
      description = "Users' storage"
      ingress {{
        description = "from ${{var.name}}'s tasks"
      }}
      dynamic "egress" {{
        for_each = var.ports
        content {{
          description = "port ${{egress.value}} | out"
        }}
      }}
    }}
    resource "aws_security_group_rule" "b" {{
      description = "{long}"
    }}
    resource "aws_vpc_security_group_ingress_rule" "c" {{
      description = "Session port ${{each.value[0]}} (tcp): fine"
    }}
    resource "aws_vpc_security_group_egress_rule" "d" {{
      description = "NFS to EFS, fine"
    }}
    resource "aws_security_group" "e" {{
      egress = [{{ description = "caf\u00e9" }}]
    }}
    resource "aws_instance" "f" {{
      description = "not a security group's"
    }}
    "#
        ));
        let report = refused(&module, &BTreeMap::new());
        let allowed =
            "allowed: a-zA-Z0-9, spaces and ._-:/()#,@[]+=&;{}!$* (security group (rule) description)";
        assert_eq!(
            report.refused,
            vec![
                format!("aws_security_group.a.egress: description \"port ${{…}} | out\" has \"|\"; {allowed}"),
                format!("aws_security_group.a.ingress: description \"from ${{…}}'s tasks\" has \"'\"; {allowed}"),
                format!("aws_security_group.a: description \"Users' storage\" has \"'\"; {allowed}"),
                "aws_security_group.a: name \"sg-users\" starts with sg- (security group name)".to_owned(),
                format!("aws_security_group.e.egress: description \"café\" has \"é\"; {allowed}"),
                format!("aws_security_group_rule.b: description \"{long}\" is 256 characters, at most 255 allowed (security group (rule) description)"),
            ]
        );
        // The fine ones were checked too, and aws_instance is no security group.
        let checked: BTreeSet<&str> = report
            .checked
            .iter()
            .map(|(at, _, _)| at.as_str())
            .collect();
        assert!(checked.contains("aws_vpc_security_group_ingress_rule.c"));
        assert!(checked.contains("aws_vpc_security_group_egress_rule.d"));
        assert!(!checked.iter().any(|at| at.starts_with("aws_instance")));
    }

    #[test]
    fn a_bucket_name_s3_refuses_is_found() {
        let module = Module::parse(
            r#"
    variable "name" {
      type    = string
      default = "x"
      validation {
        condition     = can(regex("^[a-z][a-z0-9-]{0,34}[a-z0-9]$", var.name))
        error_message = "2 to 36 characters."
      }
    }
    resource "aws_s3_bucket" "fine" {
      bucket = "sessions-logs.example"
    }
    resource "aws_s3_bucket" "upper" {
      bucket = "Sessions_Logs"
    }
    resource "aws_s3_bucket" "dots" {
      bucket = "logs..example-"
    }
    resource "aws_s3_bucket" "prefix" {
      bucket_prefix = "${var.name}-logs-"
    }
    "#,
        );
        let report = refused(&module, &BTreeMap::new());
        let name = longest_match("^[a-z][a-z0-9-]{0,34}[a-z0-9]$").unwrap();
        assert_eq!(
            report.refused,
            vec![
                "aws_s3_bucket.dots: bucket \"logs..example-\" has two adjacent periods (S3 bucket name)".to_owned(),
                format!("aws_s3_bucket.prefix: bucket_prefix \"{name}-logs-\" is 42 characters, at most 37 allowed (S3 bucket name prefix)"),
                "aws_s3_bucket.upper: bucket \"Sessions_Logs\" does not begin with a letter or digit (S3 bucket name)".to_owned(),
                "aws_s3_bucket.upper: bucket \"Sessions_Logs\" has \"S_L\"; allowed: a-z, 0-9, . and - (S3 bucket name)".to_owned(),
            ]
        );
    }

    #[test]
    fn each_result_of_a_conditional_name_or_description_is_checked() {
        let module = Module::parse(
            r#"
    resource "aws_security_group" "a" {
      name        = var.on ? "tasks" : "sg-tasks"
      description = var.on ? "Session tasks: fine" : "Users' tasks"
    }
    "#,
        );
        let report = refused(&module, &BTreeMap::new());
        assert_eq!(
            report.refused,
            vec![
                "aws_security_group.a: description \"Users' tasks\" has \"'\"; allowed: a-zA-Z0-9, spaces and ._-:/()#,@[]+=&;{}!$* (security group (rule) description)".to_owned(),
                "aws_security_group.a: name \"sg-tasks\" starts with sg- (security group name)".to_owned(),
            ]
        );
        assert_eq!(report.checked.len(), 4);
    }

    #[test]
    fn the_longest_value_a_validation_admits_walks_each_class_punctuation_first() {
        assert_eq!(
            longest_match("^[a-z][a-z0-9-]{1,30}$").as_deref(),
            Some("a-0123456789abcdefghijklmnopqrs")
        );
        assert_eq!(longest_match("^x\\.[0-9]{2}y?$").as_deref(), Some("x.01y"));
        for unbounded in [
            "[a-z]+",
            "^[a-z]+$",
            "^(a|b)$",
            "^[^a]$",
            "^a.$",
            "^[a-z]{1,}$",
        ] {
            assert_eq!(longest_match(unbounded), None, "{unbounded}");
        }
    }
}

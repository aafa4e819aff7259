"""The data categories a county shares, as data. Adding a category means adding an entry here
(or a row through the admin) and running ``manage.py sync_catalog``; imports, validation, the
consent screen and the gate read these definitions and need no new code.

Field types: string (max_length), integer (min, max), decimal (places, min, max), date,
boolean, choice (choices: {value: [label_zh, label_en]}). ``key`` names the fields that
identify one record of a farmer within the category (a contract, a year's subsidy of a kind).
"""

from __future__ import annotations

CROPS = {
    "wheat": ["小麦", "wheat"], "corn": ["玉米", "corn"], "rice": ["水稻", "rice"],
    "peanut": ["花生", "peanut"], "soybean": ["大豆", "soybean"], "tea": ["茶叶", "tea"], "other": ["其他", "other"],
}

CATEGORIES: list[dict] = [
    {
        "code": "land_contract",
        "name_zh": "土地承包经营权", "name_en": "Land contract rights",
        "department_zh": "县农业农村局", "department_en": "County Agriculture and Rural Affairs Bureau",
        "purpose_zh": "您承包的土地面积，用来估算您的种植收入和可贷额度。",
        "purpose_en": "The farmland you hold under contract, used to estimate your farming income and credit line.",
        "sensitivity": "important", "requires_consent": True,
        "field_schema": {"key": ["contract_no"], "fields": [
            {"name": "contract_no", "type": "string", "max_length": 40, "required": True, "label_zh": "承包合同编号", "label_en": "Contract number"},
            {"name": "parcels", "type": "integer", "min": 1, "max": 500, "required": True, "label_zh": "地块数", "label_en": "Parcels"},
            {"name": "area_mu", "type": "decimal", "places": 2, "min": "0.01", "max": "100000", "required": True, "label_zh": "承包面积（亩）", "label_en": "Area (mu)"},
            {"name": "term_end", "type": "date", "required": False, "label_zh": "承包期限至", "label_en": "Term ends"},
        ]},
    },
    {
        "code": "land_transfer",
        "name_zh": "土地流转", "name_en": "Land transfer",
        "department_zh": "县农村产权交易中心", "department_en": "County Rural Property Rights Exchange",
        "purpose_zh": "您转入或转出土地的合同，转入的土地会计入您的经营面积。",
        "purpose_en": "Land you rent in or out; land rented in counts towards the area you farm.",
        "sensitivity": "important", "requires_consent": True,
        "field_schema": {"key": ["contract_no"], "fields": [
            {"name": "contract_no", "type": "string", "max_length": 40, "required": True, "label_zh": "流转合同编号", "label_en": "Transfer contract number"},
            {"name": "direction", "type": "choice", "choices": {"in": ["转入", "rented in"], "out": ["转出", "rented out"]}, "required": True, "label_zh": "流转方向", "label_en": "Direction"},
            {"name": "area_mu", "type": "decimal", "places": 2, "min": "0.01", "max": "100000", "required": True, "label_zh": "流转面积（亩）", "label_en": "Area (mu)"},
            {"name": "start_date", "type": "date", "required": True, "label_zh": "起始日期", "label_en": "Start date"},
            {"name": "term_months", "type": "integer", "min": 1, "max": 360, "required": True, "label_zh": "期限（月）", "label_en": "Term (months)"},
            {"name": "annual_rent_yuan", "type": "decimal", "places": 2, "min": "0", "max": "10000000", "required": False, "label_zh": "年租金（元）", "label_en": "Annual rent (yuan)"},
        ]},
    },
    {
        "code": "agri_subsidy",
        "name_zh": "农业补贴", "name_en": "Agricultural subsidies",
        "department_zh": "县财政局", "department_en": "County Finance Bureau",
        "purpose_zh": "您领取的种粮、耕地地力等补贴，反映您实际种地的情况。",
        "purpose_en": "Subsidies you received for grain and arable land, showing the land you actually farm.",
        "sensitivity": "general", "requires_consent": True,
        "field_schema": {"key": ["year", "kind"], "fields": [
            {"name": "year", "type": "integer", "min": 2000, "max": 2100, "required": True, "label_zh": "年度", "label_en": "Year"},
            {"name": "kind", "type": "choice", "choices": {
                "arable_land": ["耕地地力保护补贴", "arable land protection"], "grain": ["种粮农民补贴", "grain growers"],
                "machinery": ["农机购置补贴", "farm machinery"], "other": ["其他补贴", "other"]},
             "required": True, "label_zh": "补贴类型", "label_en": "Kind"},
            {"name": "amount_yuan", "type": "decimal", "places": 2, "min": "0.01", "max": "10000000", "required": True, "label_zh": "补贴金额（元）", "label_en": "Amount (yuan)"},
        ]},
    },
    {
        "code": "agri_insurance",
        "name_zh": "农业保险", "name_en": "Agricultural insurance",
        "department_zh": "县农业农村局（承保机构报送）", "department_en": "County Agriculture Bureau (from insurers)",
        "purpose_zh": "您参加的农业保险，说明您的收成有保障。",
        "purpose_en": "Crop insurance you hold, which shows your harvest is protected.",
        "sensitivity": "general", "requires_consent": True,
        "field_schema": {"key": ["policy_no"], "fields": [
            {"name": "policy_no", "type": "string", "max_length": 40, "required": True, "label_zh": "保单号", "label_en": "Policy number"},
            {"name": "year", "type": "integer", "min": 2000, "max": 2100, "required": True, "label_zh": "年度", "label_en": "Year"},
            {"name": "crop", "type": "choice", "choices": CROPS, "required": True, "label_zh": "作物", "label_en": "Crop"},
            {"name": "insured_area_mu", "type": "decimal", "places": 2, "min": "0.01", "max": "100000", "required": True, "label_zh": "投保面积（亩）", "label_en": "Insured area (mu)"},
            {"name": "sum_insured_yuan", "type": "decimal", "places": 2, "min": "0.01", "max": "100000000", "required": True, "label_zh": "保险金额（元）", "label_en": "Sum insured (yuan)"},
        ]},
    },
    {
        "code": "social_insurance",
        "name_zh": "社会保险", "name_en": "Social insurance",
        "department_zh": "县人力资源和社会保障局", "department_en": "County Human Resources and Social Security Bureau",
        "purpose_zh": "您参加养老、医疗保险的年限，说明您的生活稳定。",
        "purpose_en": "How long you have paid into pension and medical insurance, showing stability.",
        "sensitivity": "important", "requires_consent": True,
        "field_schema": {"key": ["scheme"], "fields": [
            {"name": "scheme", "type": "choice", "choices": {
                "resident_pension": ["城乡居民养老保险", "resident pension"], "employee_pension": ["职工养老保险", "employee pension"],
                "medical": ["城乡居民医疗保险", "resident medical insurance"]},
             "required": True, "label_zh": "险种", "label_en": "Scheme"},
            {"name": "enrolled", "type": "boolean", "required": True, "label_zh": "是否参保", "label_en": "Enrolled"},
            {"name": "contribution_years", "type": "integer", "min": 0, "max": 60, "required": True, "label_zh": "缴费年限", "label_en": "Contribution years"},
        ]},
    },
    {
        "code": "business_entity",
        "name_zh": "新型农业经营主体", "name_en": "New agricultural business entities",
        "department_zh": "县农业农村局", "department_en": "County Agriculture and Rural Affairs Bureau",
        "purpose_zh": "您登记的家庭农场、合作社或农业企业，经营规模越大可贷额度越高。",
        "purpose_en": "A family farm, cooperative or agri-business you registered; larger operations get larger lines.",
        "sensitivity": "general", "requires_consent": True,
        "field_schema": {"key": ["registration_no"], "fields": [
            {"name": "registration_no", "type": "string", "max_length": 40, "required": True, "label_zh": "登记编号", "label_en": "Registration number"},
            {"name": "entity_type", "type": "choice", "choices": {
                "family_farm": ["家庭农场", "family farm"], "cooperative": ["农民专业合作社", "cooperative"],
                "registered_business": ["农业企业", "registered agri-business"]},
             "required": True, "label_zh": "主体类型", "label_en": "Entity type"},
            {"name": "entity_name", "type": "string", "max_length": 100, "required": True, "label_zh": "主体名称", "label_en": "Entity name"},
            {"name": "registered_on", "type": "date", "required": True, "label_zh": "登记日期", "label_en": "Registered on"},
        ]},
    },
    {
        "code": "coop_membership",
        "name_zh": "合作社成员", "name_en": "Cooperative membership",
        "department_zh": "县农业农村局", "department_en": "County Agriculture and Rural Affairs Bureau",
        "purpose_zh": "您加入的农民合作社，说明您有稳定的销路和帮扶。",
        "purpose_en": "The farmers' cooperative you belong to, showing a steady market and support.",
        "sensitivity": "general", "requires_consent": True,
        "field_schema": {"key": ["cooperative_code"], "fields": [
            {"name": "cooperative_code", "type": "string", "max_length": 40, "required": True, "label_zh": "合作社统一社会信用代码", "label_en": "Cooperative credit code"},
            {"name": "cooperative_name", "type": "string", "max_length": 100, "required": True, "label_zh": "合作社名称", "label_en": "Cooperative name"},
            {"name": "joined_on", "type": "date", "required": True, "label_zh": "入社日期", "label_en": "Joined on"},
        ]},
    },
    {
        "code": "poverty_monitoring",
        "name_zh": "脱贫户与防返贫监测", "name_en": "Poverty-alleviation monitoring",
        "department_zh": "县乡村振兴局", "department_en": "County Rural Revitalisation Bureau",
        "purpose_zh": "您家是否是脱贫户或监测户，用于享受贴息等帮扶政策。",
        "purpose_en": "Whether your household is lifted out of poverty or monitored, for interest subsidies and support.",
        "sensitivity": "sensitive", "requires_consent": True,
        "field_schema": {"key": ["status"], "fields": [
            {"name": "status", "type": "choice", "choices": {
                "lifted": ["脱贫户", "lifted out of poverty"], "monitored": ["防返贫监测对象", "monitored against relapse"]},
             "required": True, "label_zh": "类别", "label_en": "Status"},
            {"name": "since_year", "type": "integer", "min": 2010, "max": 2100, "required": True, "label_zh": "认定年度", "label_en": "Since year"},
        ]},
    },
    {
        "code": "dishonest_debtor",
        "name_zh": "失信被执行人", "name_en": "Dishonest judgment debtors",
        "department_zh": "县人民法院", "department_en": "County People's Court",
        "purpose_zh": "法院公布的失信被执行人名单；在名单上的不能获得授信。",
        "purpose_en": "The court's public list of dishonest judgment debtors; people on it cannot get a credit line.",
        "sensitivity": "important", "requires_consent": False,
        "field_schema": {"key": ["case_no"], "fields": [
            {"name": "case_no", "type": "string", "max_length": 60, "required": True, "label_zh": "执行案号", "label_en": "Case number"},
            {"name": "court", "type": "string", "max_length": 100, "required": True, "label_zh": "执行法院", "label_en": "Court"},
            {"name": "listed_on", "type": "date", "required": True, "label_zh": "列入日期", "label_en": "Listed on"},
            {"name": "removed_on", "type": "date", "required": False, "label_zh": "移出日期", "label_en": "Removed on"},
        ]},
    },
]

CREDIT_PURPOSE = "credit"

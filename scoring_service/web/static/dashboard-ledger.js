// 资金台账 tab (SPEC §12, §16): the city's 1:1 subsidy per district and per community at a date, its
// three tranches (due / held with the reasons / paid / not due / not applicable, refunds owed back),
// the reward reserve, the city budget and its over-commitment; the spreadsheets fetched with the key.
// An admin records a payment of a due tranche; an admin or the district key of the community's
// district records the district's funds in place. Reads GET /rounds/{r}/ledger; no external resources.
//
// Money arrives in integer fen and is shown in yuan with two decimals: formatted with BigInt integer
// division and remainder, and typed amounts are parsed back to fen the same way, never through a float.
(function () {
  "use strict";
  const D = window.Dashboard;
  const {config, $, el} = D;
  const L = config.ledger;
  const MILESTONE = Object.fromEntries(config.milestones.map((m) => [m.code, m.name_zh]));
  const ORDINAL = {1: "第一笔", 2: "第二笔", 3: "第三笔"};
  // A symbol and words with every colour, so the table reads without colour too.
  const SYMBOL = {paid: "✓", due: "●", held: "‖", not_due: "○", not_applicable: "—"};
  const FIELD_NAMES = {amount_fen: "拨付金额", paid_on: "拨付日期", voucher: "拨付凭证号", tranche: "拨付批次",
    disbursement_id: "拨付编号", district_funds_in_place_fen: "区级配套资金到位金额", land_category: "土地类别",
    approved_budget_fen: "批复预算", settled_budget_fen: "结算审定金额", community_id: "小区"};
  const DATE = String.raw`(\d{4}-\d{2}-\d{2})`;
  const PAGE_ROWS = 400;  // a national round lists thousands of communities: filter, or ask for all
  const lg = {round: null, asOf: null, district: "", report: null, seq: 0, names: {}, namesFor: null, rows: {},
    paying: null, editing: null, showAll: false, busy: false, focusAfter: null};

  // -- money in integer fen ------------------------------------------------------------------
  /** 123456789 → "1,234,567.89" (yuan); null → "—". */
  function yuan(fen) {
    if (fen === null || fen === undefined) return "—";
    let n = BigInt(fen);
    const negative = n < 0n;
    if (negative) n = -n;
    const whole = (n / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (negative ? "-" : "") + whole + "." + (n % 100n).toString().padStart(2, "0");
  }
  /** What an amount field starts with: 150000 fen → "1500.00" (no separators, no sign). */
  const plainYuan = (fen) => yuan(fen < 0 ? -fen : fen).replace(/,/g, "");
  /** A typed amount in yuan → integer fen, or null when it is not an amount with at most two decimals. */
  function parseYuan(text) {
    const match = /^(\d+)(?:\.(\d{1,2}))?$/.exec(String(text).replace(/[,，\s]|元$/g, ""));
    if (!match) return null;
    const fen = BigInt(match[1]) * 100n + BigInt((match[2] || "").padEnd(2, "0"));
    return fen > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(fen);
  }
  /** ⌊S × pct / 100⌋ of SPEC §12, exact. */
  const share = (s, pct) => Number(BigInt(s) * BigInt(pct) / 100n);

  // -- ids for retries -----------------------------------------------------------------------
  function uuid4() {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    // crypto.randomUUID exists only in secure contexts (https, localhost): an intranet served over http
    // still has getRandomValues
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
  // One disbursement id per tranche until the service has answered it for good: a double click, a
  // retry after a lost answer or a reload sends the same id, which the service records once.
  const pendingKey = (communityId, tranche) => `scoring.ledger.pay.${lg.round.round_id}.${communityId}.${tranche}`;
  function pendingId(communityId, tranche) {
    const key = pendingKey(communityId, tranche);
    let id = sessionStorage.getItem(key);
    if (!id) {
      id = uuid4();
      sessionStorage.setItem(key, id);
    }
    return id;
  }
  const forgetPending = (communityId, tranche) => sessionStorage.removeItem(pendingKey(communityId, tranche));

  // -- words -----------------------------------------------------------------------------------
  const dateZh = (iso) => (iso ? `${Number(iso.slice(0, 4))}年${Number(iso.slice(5, 7))}月${Number(iso.slice(8))}日` : "");
  const communityName = (id) => lg.names[id] || id;
  const districtName = (d) => d.name_zh || d.district_id;
  const reasonName = (r) => L.hold_reasons[r] || r;
  const milestoneName = (code) => MILESTONE[code] || code;

  /** The district's money the tranche waits for: cum_k of SPEC §12 (S from the approved budget; S_final for k = 3). */
  function cumulative(row, k) {
    if (row.approved_budget_fen === null) return null;
    if (k === 3) return row.subsidy_fen;
    const s = Number(BigInt(row.approved_budget_fen) / 2n);
    return share(s, L.tranches[k - 1].cumulative_pct);
  }

  // -- reading the ledger ------------------------------------------------------------------
  function load(round) {
    if (!lg.round || lg.round.round_id !== round.round_id) {
      lg.asOf = null;
      lg.district = "";
      lg.showAll = false;
    }
    lg.round = round;
    lg.editing = null;
    const me = D.state.me, scoped = !!me && me.role === "district";
    $("lg-district-box").hidden = scoped;
    $("lg-scope").hidden = !scoped;
    if (scoped) lg.district = "";  // the service shows a district key its own district only
    $("lg-status").textContent = "";
    fetchLedger();
  }

  async function loadNames() {
    const year = lg.round.year;
    const key = `${lg.round.round_id}:${D.state.me ? D.state.me.key_id : ""}`;
    if (lg.namesFor === key) return;
    try {
      const list = await D.api("communities" + (year ? `?renovation_year=${year}` : ""));
      lg.names = Object.fromEntries(list.items.map((c) => [c.community_id, c.name_zh]));
      lg.namesFor = key;
    } catch (e) {
      lg.names = {};  // ids instead of names; the ledger itself says what went wrong, if anything
    }
  }

  async function fetchLedger() {
    const seq = ++lg.seq;
    $("lg-message").textContent = "";
    const query = new URLSearchParams();
    if (lg.asOf) query.set("as_of", lg.asOf);
    if (lg.district) query.set("district_id", lg.district);
    let report;
    try {
      [report] = await Promise.all([
        D.api(`rounds/${encodeURIComponent(lg.round.round_id)}/ledger` + (query.toString() ? "?" + query : "")),
        loadNames()]);
    } catch (e) {
      if (seq !== lg.seq) return;
      $("lg-message").textContent = {
        401: "资金台账需要领导小组、管理员或区级密钥，请先在上方输入访问密钥。",
        403: "该密钥无权查看资金台账（需要领导小组、管理员或本区的区级密钥）。",
        404: "找不到该测评轮次。",
        422: "统计日期不正确：" + e.message,
      }[e.status] || "加载失败：" + e.message;
      lg.report = null;
      ["lg-budget", "lg-totals", "lg-count"].forEach((id) => $(id).replaceChildren());
      $("lg-warning").hidden = true;
      ["lg-district-table", "lg-table"].forEach((id) => $(id).querySelector("tbody").replaceChildren());
      $("lg-district-table").querySelector("tfoot").replaceChildren();
      $("lg-more").hidden = true;
      return;
    }
    if (seq !== lg.seq) return;  // a newer request (another date or district) has been made
    lg.report = report;
    render();
  }

  function render() {
    const report = lg.report;
    lg.rows = Object.fromEntries(report.communities.map((c) => [c.community_id, c]));
    $("lg-as-of").value = report.as_of;
    if (!lg.district && !$("lg-district-box").hidden) {  // the whole round: offer each of its districts
      const select = $("lg-district");
      select.replaceChildren(el("option", {value: ""}, "全部"),
        ...report.districts.map((d) => el("option", {value: d.district_id}, districtName(d))));
      select.value = "";
    }
    if (!$("lg-scope").hidden && report.districts.length) {
      $("lg-scope").textContent = "本区：" + districtName(report.districts[0]);
    }
    renderBudget(report);
    renderTotals(report);
    renderDistricts(report);
    renderCommunities(report);
    if (lg.focusAfter) {
      const target = $("lg-table").querySelector(lg.focusAfter);
      lg.focusAfter = null;
      if (target) target.focus();
    }
  }

  function figure(list, label, value, attrs) {
    const box = el("div", {class: "figure", ...(attrs || {})});
    box.append(el("dt", {}, label), el("dd", {}, value));
    list.append(box);
    return box;
  }

  function renderBudget(report) {
    const list = $("lg-budget");
    list.replaceChildren();
    const budget = report.city_budget_fen;
    figure(list, "市级资金预算", budget === null ? "未设定" : yuan(budget) + " 元", {"data-figure": "city_budget"});
    figure(list, "以奖代补预留资金（奖励资金池）", yuan(report.reward_pool_fen) + " 元", {"data-figure": "reward_pool"});
    figure(list, "已承诺的市级补贴", yuan(report.committed_subsidy_fen) + " 元", {"data-figure": "committed"});
    const rest = figure(list, "未承诺资金", report.uncommitted_fen === null ? "—" : yuan(report.uncommitted_fen) + " 元",
      {"data-figure": "uncommitted", class: "figure" + (report.over_committed ? " bad" : "")});
    if (report.uncommitted_fen === null) {
      rest.append(el("dd", {class: "sub"}, "本轮次未设定市级资金预算"));
    }
    const warning = $("lg-warning");
    warning.hidden = !report.over_committed;
    if (report.over_committed) {
      const over = -report.uncommitted_fen;
      warning.replaceChildren(el("strong", {}, "⚠ 市级资金超额承诺"),
        el("span", {}, `已承诺的市级补贴 ${yuan(report.committed_subsidy_fen)} 元加上以奖代补预留资金 ` +
          `${yuan(report.reward_pool_fen)} 元，超出市级资金预算 ${yuan(budget)} 元，超出 ${yuan(over)} 元。` +
          "请在拨付前核减项目预算或追加市级资金。"));
    } else {
      warning.replaceChildren();
    }
  }

  function renderTotals(report) {
    const list = $("lg-totals"), t = report.totals;
    const scope = report.districts.length === 1 && (lg.district || !$("lg-scope").hidden)
      ? districtName(report.districts[0]) : "全市";
    $("lg-t-title").textContent = `拨付情况（${scope}，截至${dateZh(report.as_of)}）`;
    list.replaceChildren();
    figure(list, "市级补贴", yuan(t.subsidy_fen) + " 元", {"data-figure": "subsidy"});
    figure(list, "已拨付", yuan(t.paid_fen) + " 元", {"data-figure": "paid", class: "figure paid"});
    figure(list, "应拨付", yuan(t.due_fen) + " 元", {"data-figure": "due", class: "figure due"});
    figure(list, "暂缓拨付", yuan(t.held_fen) + " 元", {"data-figure": "held", class: "figure held"});
    figure(list, "应退回", yuan(t.refund_due_fen) + " 元", {"data-figure": "refund_due", class: "figure refund"});
  }

  const MONEY_COLUMNS = ["subsidy_fen", "paid_fen", "due_fen", "held_fen", "refund_due_fen"];

  function renderDistricts(report) {
    const tbody = $("lg-district-table").querySelector("tbody");
    tbody.replaceChildren(...report.districts.map((d) => {
      const tr = el("tr", {"data-district": d.district_id});
      tr.append(el("th", {scope: "row"}, districtName(d)),
        ...MONEY_COLUMNS.map((k) => el("td", {class: "num", "data-col": k}, yuan(d[k]))));
      return tr;
    }));
    const foot = $("lg-district-table").querySelector("tfoot");
    if (report.districts.length > 1) {
      const tr = el("tr");
      tr.append(el("th", {scope: "row"}, "合计"),
        ...MONEY_COLUMNS.map((k) => el("td", {class: "num", "data-col": k}, yuan(report.totals[k]))));
      foot.replaceChildren(tr);
    } else {
      foot.replaceChildren();
    }
  }

  // -- the communities -------------------------------------------------------------------------
  function shown(c) {
    const has = (test) => c.tranches.some(test);
    switch ($("lg-show").value) {
      case "due": return has((t) => t.status === "due" && t.amount_fen > 0);
      case "held": return has((t) => t.status === "held");
      case "refund": return has((t) => t.status === "due" && t.amount_fen < 0);
      case "paid": return has((t) => t.status === "paid");
      case "unfunded": return c.land_category === null;
      default: return true;
    }
  }

  function renderCommunities(report) {
    const head = el("tr");
    head.append(el("th", {scope: "col"}, "小区（土地类别）"),
      el("th", {scope: "col", class: "num"}, "批复预算"), el("th", {scope: "col", class: "num"}, "结算审定金额"),
      el("th", {scope: "col", class: "num"}, "区级资金到位"), el("th", {scope: "col", class: "num"}, "市级补贴"),
      ...L.tranches.map((t) => el("th", {scope: "col", class: "tranche-col", "data-tranche": t.tranche}, t.name_zh)));
    $("lg-table").querySelector("thead").replaceChildren(head);
    const names = Object.fromEntries(report.districts.map((d) => [d.district_id, districtName(d)]));
    const selected = report.communities.filter(shown);
    const limit = lg.showAll ? selected.length : Math.min(selected.length, PAGE_ROWS);
    const rows = [];
    let group = null;
    selected.slice(0, limit).forEach((c) => {
      if (report.districts.length > 1 && c.district_id !== group) {
        group = c.district_id;
        const count = selected.filter((x) => x.district_id === group).length;
        const tr = el("tr", {class: "group"});
        tr.append(el("th", {scope: "colgroup", colspan: "8"}, `${names[group] || group}（${count} 个小区）`));
        rows.push(tr);
      }
      rows.push(communityRow(c));
    });
    if (!rows.length) {
      const tr = el("tr");
      tr.append(el("td", {colspan: "8", class: "empty"}, "没有符合条件的小区。"));
      rows.push(tr);
    }
    $("lg-table").querySelector("tbody").replaceChildren(...rows);
    const total = report.communities.length;
    $("lg-count").textContent = (selected.length === total ? `共 ${total} 个小区` : `${total} 个小区中有 ${selected.length} 个符合条件`) +
      (limit < selected.length ? `，这里先列出前 ${limit} 个。` : "。") +
      (writer() === "admin" ? "“应拨付”的一笔可以直接登记拨付；区级资金到位金额可以点“修改”登记。"
        : writer() === "district" ? "本区小区的区级资金到位金额可以点“修改”登记。" : "");
    $("lg-more").hidden = limit >= selected.length;
    $("lg-more").textContent = `显示全部 ${selected.length} 个小区`;
  }

  /** "admin" or "district" when the key may record something on this page, else null. */
  function writer() {
    const me = D.state.me;
    return me && (me.role === "admin" || me.role === "district") ? me.role : null;
  }

  function communityRow(c) {
    const tr = el("tr", {"data-community": c.community_id});
    const name = el("th", {scope: "row"});
    name.append(el("span", {class: "c-name"}, communityName(c.community_id)), el("span", {class: "c-id"}, c.community_id));
    if (c.land_category !== null) {
      name.append(el("span", {class: `land land-${c.land_category}`, "data-col": "land_category"},
        L.land_categories[c.land_category] || c.land_category));
    }
    tr.append(name);
    if (c.land_category === null) {
      tr.append(el("td", {class: "unfunded", colspan: "4"}, "未登记资金（不计入合计）"));
    } else {
      tr.append(el("td", {class: "num", "data-col": "approved"}, yuan(c.approved_budget_fen)),
        el("td", {class: "num", "data-col": "settled"}, yuan(c.settled_budget_fen)),
        fundsCell(c),
        el("td", {class: "num", "data-col": "subsidy"}, yuan(c.subsidy_fen)));
    }
    c.tranches.forEach((t) => tr.append(trancheCell(c, t)));
    return tr;
  }

  function fundsCell(c) {
    const td = el("td", {class: "num funds", "data-col": "funds"});
    if (lg.editing === c.community_id) {
      td.append(fundsForm(c));
      return td;
    }
    td.append(el("span", {class: "amount"}, yuan(c.district_funds_in_place_fen)));
    if (D.canRecordIn(c.district_id)) {
      td.append(el("button", {type: "button", class: "link", "data-action": "funds", "data-community": c.community_id,
        "aria-label": `修改${communityName(c.community_id)}的区级资金到位金额`}, "修改"));
    }
    return td;
  }

  function fundsForm(c) {
    const form = el("form", {class: "funds-form", "data-community": c.community_id, novalidate: ""});
    const id = `lg-funds-${c.community_id}`;
    const input = el("input", {id, type: "text", inputmode: "decimal", autocomplete: "off", required: "",
      value: plainYuan(c.district_funds_in_place_fen)});
    const buttons = el("span", {class: "row-actions"});
    buttons.append(el("button", {type: "submit", class: "primary"}, "保存"),
      el("button", {type: "button", "data-action": "funds-cancel"}, "取消"));
    form.append(el("label", {for: id}, "区级资金到位（元）"), input, buttons,
      el("span", {class: "message form-error", role: "alert"}));
    return form;
  }

  function trancheCell(c, t) {
    const refund = t.amount_fen !== null && t.amount_fen < 0;
    const td = el("td", {class: `tranche tr-${t.status}` + (refund ? " refund" : ""), "data-tranche": t.tranche,
      "data-status": t.status, tabindex: "-1"});  // focused after a payment is recorded
    if (c.land_category === null) {  // no funding record: nothing to pay yet, counted nowhere
      td.append(el("span", {class: "state", title: "未登记资金"}, "—"));
      return td;
    }
    if (t.status === "not_applicable") {
      td.append(el("span", {class: "state", title: "独立操作区不享受市级补贴"}, `${SYMBOL.not_applicable} 不适用`));
      return td;
    }
    const amount = t.amount_fen === null ? "—" : refund ? yuan(-t.amount_fen) : yuan(t.amount_fen);
    let state = L.statuses[t.status] || t.status;
    if (refund) state = {paid: "已退回", due: "应退回", held: "应退回（暂缓）", not_due: "结算后应退回"}[t.status] || state;
    td.append(el("span", {class: "amount"}, amount), el("span", {class: "state"}, `${SYMBOL[t.status]} ${state}`));
    if (t.status === "paid") {
      td.append(el("span", {class: "detail"}, `${t.paid_on} ${refund ? "收回" : "拨付"}`));
      if (t.voucher) td.append(el("span", {class: "detail voucher"}, `凭证：${t.voucher}`));
    } else if (t.status === "held") {
      t.reasons.forEach((r) => {
        let words = reasonName(r);
        if (r === "district_match_missing") {
          const need = cumulative(c, t.tranche);
          if (need !== null) words += `：区级应到位 ${yuan(need)} 元，还差 ${yuan(need - c.district_funds_in_place_fen)} 元`;
        } else if (r === "acceptance_failed") {
          words += "（测评等级为不合格或尚未评定）";
        }
        td.append(el("span", {class: "detail reason", "data-reason": r}, words));
      });
    } else if (t.status === "not_due") {
      td.append(el("span", {class: "detail"}, `待“${milestoneName(t.milestone)}”`));
    }
    if (t.status === "due" && D.state.me && D.state.me.role === "admin") {
      td.append(el("button", {type: "button", class: "pay", "data-action": "pay", "data-community": c.community_id,
        "data-tranche": t.tranche, "aria-haspopup": "dialog",
        "aria-label": `登记${communityName(c.community_id)}${ORDINAL[t.tranche]}${refund ? "退回款" : "拨付"}`},
      refund ? "登记退回" : "登记拨付"));
    }
    return td;
  }

  // -- the service's refusals in Chinese ----------------------------------------------------------
  const MESSAGES = [
    [new RegExp(String.raw`^must be (-?\d+) fen \([^)]*\), the amount of tranche (\d) computed today \(${DATE}\)$`),
      (m) => `应为 ${yuan(Number(m[1]))} 元（按今天 ${m[3]} 计算的${ORDINAL[m[2]]}金额）`],
    [new RegExp(`^must not be after today \\(${DATE}, China time\\)$`), (m) => `不能晚于今天（${m[1]}）`],
    [new RegExp(`^must not be before (\\w+) was reached \\(${DATE}\\)$`),
      (m) => `不能早于“${milestoneName(m[1])}”的完成日期（${m[2]}）`],
    [/^Not a valid date\.$/, () => "日期格式不正确"],
    [/^Missing data for required field\.$/, () => "必须填写"],
    [/^Not a valid integer\.$/, () => "必须是整数（分）"],
    [/^Must be greater than or equal to (-?\d+)/, (m) => `不能小于 ${m[1]}`],
    [/^Longer than maximum length (\d+)/, (m) => `不能超过 ${m[1]} 个字`],
    [/^is not covered by round/, () => "该小区不在本轮次的改造范围内"],
  ];
  /** Why a tranche cannot be paid, from the message of 409 tranche_not_due. */
  function notDueWords(message) {
    if (/has no funding record/.test(message)) return "该小区还没有登记资金。";
    if (/is not_applicable/.test(message)) return "独立操作区不享受市级补贴。";
    let m = /is not_due: milestone (\w+) is not reached/.exec(message);
    if (m) return `还没到拨付节点（“${milestoneName(m[1])}”尚未完成）。`;
    const reasons = [];
    m = /district_match_missing \(the district's funds in place, (\d+) fen, are below the cumulative city share (\d+) fen\)/
      .exec(message);
    if (m) reasons.push(`${reasonName("district_match_missing")}（区级资金到位 ${yuan(Number(m[1]))} 元，` +
      `少于市级累计应拨 ${yuan(Number(m[2]))} 元）`);
    else if (/district_match_missing/.test(message)) reasons.push(reasonName("district_match_missing"));
    if (/acceptance_failed/.test(message)) reasons.push(`${reasonName("acceptance_failed")}（测评等级为不合格或尚未评定）`);
    return reasons.length ? `暂缓拨付：${reasons.join("；")}。` : message;
  }
  function refusal(result, what) {
    const body = result.body || {};
    switch (result.status) {
      case 422: return `未能${what}：${D.fieldErrors(body, {names: FIELD_NAMES, messages: MESSAGES})}。`;
      case 409: {
        const message = body.message || "";
        if (body.error === "tranche_not_due") return `未能${what}：今天这笔资金还不能拨付——${notDueWords(message)}`;
        if (body.error === "already_paid") {
          const m = new RegExp(`already paid on ${DATE}`).exec(message);
          if (m) return `未能${what}：这笔资金已于 ${m[1]} 登记拨付，不能重复登记。台账已刷新。`;
          return `未能${what}：这笔资金已经登记过拨付，不能重复登记。台账已刷新。`;
        }
        if (body.error === "conflict") {
          return `未能${what}：这个拨付编号已登记过内容不同的拨付（可能之前的提交已经成功）。台账已刷新，请核对后再登记。`;
        }
        return `未能${what}：${message}`;
      }
      case 401: return `未能${what}：访问密钥无效或已停用，请重新输入密钥。`;
      case 403: {
        const message = body.message || "";
        if (/no funding record yet/.test(message)) return `未能${what}：该小区还没有资金记录，须由管理员先登记预算。`;
        if (/may change only district_funds_in_place_fen/.test(message)) {
          return `未能${what}：区级密钥只能修改区级配套资金到位金额（预算等其他内容刚被管理员修改过，请刷新后再试）。`;
        }
        return `未能${what}：该密钥无权进行这项操作（拨付只能由管理员登记；区级资金到位由管理员或本区的区级密钥登记）。`;
      }
      case 404: return `未能${what}：找不到该小区或资金记录。`;
      case 429: return `未能${what}：操作太频繁，请稍后再试。`;
      default: return `未能${what}：` + (body.message || "HTTP " + result.status);
    }
  }

  // -- recording a payment (admin) ---------------------------------------------------------------
  const dialog = $("lg-dialog");

  function chinaToday() {  // the browser's today in China time, a starting point for the date field
    return new Date(Date.now() + 8 * 3600 * 1000).toISOString().slice(0, 10);
  }

  function openPayment(communityId, k) {
    const c = lg.rows[communityId], t = c.tranches[k - 1];
    const refund = t.amount_fen < 0;
    lg.paying = {communityId, tranche: k, refund, amount: t.amount_fen};
    $("lg-form-title").textContent = `${refund ? "登记退回款" : "登记拨付"}：${communityName(communityId)} · ${ORDINAL[k]}`;
    $("lg-form-context").textContent = `${L.tranches[k - 1].name_zh}，拨付节点“${milestoneName(t.milestone)}”已完成。` +
      (refund ? `结算后市级补贴减少，区里应退回 ${yuan(-t.amount_fen)} 元；登记收到的退回款。`
        : `按截至${dateZh(lg.report.as_of)}的台账计算，应拨付 ${yuan(t.amount_fen)} 元。`);
    $("lg-amount-label").textContent = refund ? "收到的退回金额（元）" : "拨付金额（元）";
    $("lg-paid-on-label").textContent = refund ? "收到日期" : "拨付日期";
    $("lg-amount").value = plainYuan(t.amount_fen);
    $("lg-paid-on").value = chinaToday();
    $("lg-voucher").value = "";
    $("lg-form-error").textContent = "";
    dialog.showModal();
    $("lg-amount").focus();
  }

  $("lg-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (lg.busy) return;  // one request at a time; a retry reuses the same disbursement id anyway
    const {communityId, tranche, refund} = lg.paying;
    const fen = parseYuan($("lg-amount").value);
    if (fen === null) {
      $("lg-form-error").textContent = "未能登记：金额应为元，最多两位小数，例如 150000.00。";
      $("lg-amount").focus();
      return;
    }
    const payload = {disbursement_id: pendingId(communityId, tranche), tranche, amount_fen: refund ? -fen : fen,
      paid_on: $("lg-paid-on").value};
    const voucher = $("lg-voucher").value.trim();
    if (voucher) payload.voucher = voucher;
    const submit = $("lg-form").querySelector("button[type=submit]");
    lg.busy = true;
    submit.disabled = true;
    $("lg-form-error").textContent = "";
    try {
      const result = await D.send("POST", `rounds/${encodeURIComponent(lg.round.round_id)}/communities/` +
        `${encodeURIComponent(communityId)}/disbursements`, payload);
      if (!result.ok) {
        $("lg-form-error").textContent = refusal(result, "登记");
        if (result.status === 409 && result.body.error !== "tranche_not_due") {
          forgetPending(communityId, tranche);  // answered for good: a new payment needs a new id
          // paid after the date the ledger is shown at (a past date chosen): show it from its date on,
          // as after a payment recorded here, or the row would still read 应拨付
          const paidOn = new RegExp(`already paid on ${DATE}`).exec(result.body.message || "");
          if (result.body.error === "already_paid" && paidOn && paidOn[1] > lg.report.as_of) {
            lg.asOf = paidOn[1];
            $("lg-form-error").textContent += `统计日期已改为 ${paidOn[1]}，以显示这笔拨付。`;
          }
          fetchLedger();
        }
        return;
      }
      forgetPending(communityId, tranche);
      lg.focusAfter = `tr[data-community="${CSS.escape(communityId)}"] td[data-tranche="${tranche}"]`;
      dialog.close();
      const paid = result.body;
      let words = `已登记${communityName(communityId)}${ORDINAL[tranche]}` +
        (refund ? `退回款 ${yuan(-paid.amount_fen)} 元` : `拨付 ${yuan(paid.amount_fen)} 元`) + `，日期 ${paid.paid_on}。`;
      if (paid.paid_on > lg.report.as_of) {  // the ledger counts a payment from its date on
        lg.asOf = paid.paid_on;
        words += `统计日期已改为 ${paid.paid_on}，以显示这笔拨付。`;
      }
      $("lg-status").textContent = words;
      await fetchLedger();
    } catch (err) {
      $("lg-form-error").textContent = "未能登记：网络连接失败。可以直接再点“确认登记”重试，不会重复登记。";
    } finally {
      lg.busy = false;
      submit.disabled = false;
    }
  });
  $("lg-cancel").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    if (lg.paying && !lg.focusAfter) {
      const {communityId, tranche} = lg.paying;
      const button = $("lg-table").querySelector(
        `button[data-action="pay"][data-community="${CSS.escape(communityId)}"][data-tranche="${tranche}"]`);
      if (button) button.focus();
    }
  });

  // -- recording the district's funds in place (admin, or the district key of its district) ------
  function editFunds(communityId) {
    lg.editing = communityId;
    renderCommunities(lg.report);
    const input = $(`lg-funds-${communityId}`);
    if (input) { input.focus(); input.select(); }
  }
  function stopEditing(communityId) {
    lg.editing = null;
    lg.focusAfter = `button[data-action="funds"][data-community="${CSS.escape(communityId)}"]`;
    render();
  }

  async function saveFunds(form) {
    if (lg.busy) return;
    const communityId = form.dataset.community;
    const error = form.querySelector(".form-error");
    const fen = parseYuan(form.querySelector("input").value);
    if (fen === null) {
      error.textContent = "金额应为元，最多两位小数，例如 500000.00。";
      return;
    }
    const path = `rounds/${encodeURIComponent(lg.round.round_id)}/communities/${encodeURIComponent(communityId)}/funding`;
    const before = lg.rows[communityId];
    const submit = form.querySelector("button[type=submit]");
    lg.busy = true;
    submit.disabled = true;
    error.textContent = "";
    try {
      // Replace semantics: the other fields as they are now (a district key may change only this one).
      let current;
      try {
        current = await D.api(path);
      } catch (e) {
        error.textContent = e.status === 404 ? "该小区还没有资金记录，须由管理员先登记预算。" : "未能读取资金记录：" + e.message;
        return;
      }
      const payload = {land_category: current.land_category, approved_budget_fen: current.approved_budget_fen,
        settled_budget_fen: current.settled_budget_fen, district_funds_in_place_fen: fen};
      const result = await D.send("PUT", path, payload);
      if (!result.ok) { error.textContent = refusal(result, "保存"); return; }
      lg.editing = null;
      lg.focusAfter = `button[data-action="funds"][data-community="${CSS.escape(communityId)}"]`;
      await fetchLedger();
      const after = lg.rows[communityId];
      const released = after ? after.tranches.filter((t, i) => t.status === "due" && before.tranches[i].status === "held") : [];
      const stillHeld = after ? after.tranches.filter((t) => t.status === "held" && t.reasons.includes("district_match_missing")) : [];
      $("lg-status").textContent = `已保存${communityName(communityId)}的区级资金到位金额：${yuan(fen)} 元。` +
        (released.length ? `${released.map((t) => ORDINAL[t.tranche]).join("、")}已不再暂缓，可以拨付。` : "") +
        (stillHeld.length ? `${stillHeld.map((t) => ORDINAL[t.tranche]).join("、")}仍因区级配套资金未同步到位暂缓拨付。` : "");
    } catch (err) {
      error.textContent = "未能保存：网络连接失败，请稍后再试。";
    } finally {
      lg.busy = false;
      submit.disabled = false;
    }
  }

  const table = $("lg-table");
  table.addEventListener("click", (e) => {
    const button = e.target instanceof Element ? e.target.closest("button[data-action]") : null;
    if (!button || !lg.report) return;
    const communityId = button.dataset.community || (button.closest("form") || {}).dataset?.community;
    switch (button.dataset.action) {
      case "pay": openPayment(communityId, Number(button.dataset.tranche)); break;
      case "funds": editFunds(communityId); break;
      case "funds-cancel": stopEditing(button.closest("form").dataset.community); break;
      default: break;
    }
  });
  table.addEventListener("submit", (e) => {
    if (!e.target.matches("form.funds-form")) return;
    e.preventDefault();
    saveFunds(e.target);
  });
  table.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && e.target instanceof Element && e.target.closest("form.funds-form")) {
      stopEditing(e.target.closest("form").dataset.community);
    }
  });

  // -- controls ----------------------------------------------------------------------------
  $("lg-as-of").addEventListener("change", (e) => {
    if (!e.target.value || !lg.round) return;  // a half-typed date
    lg.asOf = e.target.value;
    lg.editing = null;
    fetchLedger();
  });
  $("lg-district").addEventListener("change", (e) => {
    lg.district = e.target.value;
    lg.editing = null;
    fetchLedger();
  });
  $("lg-show").addEventListener("change", () => { if (lg.report) renderCommunities(lg.report); });
  $("lg-more").addEventListener("click", () => {
    lg.showAll = true;
    if (lg.report) renderCommunities(lg.report);
  });
  document.querySelectorAll("button[data-lg-format]").forEach((b) => b.addEventListener("click", () => {
    if (!lg.report) { $("lg-message").textContent = "请先加载资金台账。"; return; }
    const query = {format: b.dataset.lgFormat, as_of: lg.report.as_of};
    if (lg.district) query.district_id = lg.district;
    D.download("ledger", query, $("lg-message"));
  }));

  D.registerTab("ledger", {load, ...D.ACCEPTANCE_ROUNDS});  // an aftercare round has no works to follow
})();

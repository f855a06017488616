// The survey on a resident's own phone (/s/<token>, SPEC §14). The link token goes to the API
// as a bearer token: GET /api/v1/link gives the round, the community, its questions and the
// number of participants; answers go through the kiosk's offline queue (survey-queue.js) to the
// batch endpoint with channel "online". The device cookie set by the page travels by itself.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("survey-config").textContent);
  const token = config.token;
  const linkId = token.split(".")[0];
  const INFO_KEY = "scoring.link.info." + linkId;
  const QUEUE_KEY = "scoring.link.queue." + linkId;
  const PREFS = {large: "scoring.survey.large-text", contrast: "scoring.survey.high-contrast"};
  const $ = (id) => document.getElementById(id);
  const root = document.documentElement;

  // -- 大字 / 高对比度, kept on this phone ----------------------------------------------
  function applyPrefs() {
    const large = localStorage.getItem(PREFS.large) === "1";
    const contrast = localStorage.getItem(PREFS.contrast) === "1";
    root.classList.toggle("large-text", large);
    root.classList.toggle("high-contrast", contrast);
    $("toggle-large").setAttribute("aria-pressed", String(large));
    $("toggle-contrast").setAttribute("aria-pressed", String(contrast));
  }
  function toggle(name) {
    localStorage.setItem(PREFS[name], localStorage.getItem(PREFS[name]) === "1" ? "0" : "1");
    applyPrefs();
  }
  $("toggle-large").addEventListener("click", () => toggle("large"));
  $("toggle-contrast").addEventListener("click", () => toggle("contrast"));
  applyPrefs();

  // -- what the service says, in plain Chinese -------------------------------------------
  const REASONS = {
    round_closed: "测评已结束，不再接受评价。",
    round_published: "测评已结束，结果已公布。",
    public_cap_reached: "本小区社会公众参与名额已满，感谢您的关注。",
    household_already_responded: "该门牌号已参与过本次测评，每户限答一次。",
    voided: "这份评价已被管理员作废，不能再次提交。",
    conflict: "提交内容与已保存的评价不一致，请重新作答。",
  };
  const EXPIRED = "链接已失效，请向社区工作人员索取新的二维码或链接。";
  const FIELDS = {
    household_ref: "请填写正确的门牌号。",
    submitted_at: "手机时间不正确，请校准时间后重新作答。",
  };
  function invalidText(errors) {
    const fields = Object.keys(errors || {});
    const known = fields.filter((f) => FIELDS[f]).map((f) => FIELDS[f]);
    return known.length ? known.join("") : "提交内容有误（" + fields.join("、") + "），请重新作答。";
  }

  function show(id) {
    document.querySelectorAll(".screen").forEach((s) => s.classList.toggle("active", s.id === id));
    const focusable = $(id) && $(id).querySelector("input, h1");
    if (focusable) {
      if (focusable.tagName === "H1") focusable.setAttribute("tabindex", "-1");
      focusable.focus({preventScroll: true});
    }
    window.scrollTo(0, 0);
  }
  function setStatus(text, bad) {
    $("status").textContent = text || "";
    $("status").classList.toggle("bad", !!bad);
  }
  function fail(text) { $("failed-text").textContent = text; show("failed"); }
  function refuse(text) { $("refused-text").textContent = text; show("refused"); }

  // -- the link: its round, community and questions ---------------------------------------
  let info = null;
  function setParticipants(n) {
    $("participants").textContent = String(n);
    $("participants-after").textContent = String(n);
  }
  function dateText(iso) {
    const d = new Date(iso);
    return isNaN(d) ? "" : `${d.getFullYear()}年${d.getMonth() + 1}月${d.getDate()}日`;
  }
  function useInfo(data) {
    info = data;
    $("community").textContent = data.community_name;
    $("subtitle").textContent = [data.district_name, "老旧小区改造满意度测评"].filter(Boolean).join(" · ");
    $("round-title").textContent = data.round_title || "";
    $("question-count").textContent = String(data.questions.length + 1);
    $("closes").textContent = data.closes_at ? "测评截止：" + dateText(data.closes_at) : "";
    document.title = "满意度测评 · " + data.community_name;
    setParticipants(data.participants);
  }
  async function fetchInfo() {
    const r = await fetch("/api/v1/link", {headers: {"Authorization": "Bearer " + token}, cache: "no-store"});
    let body = {};
    try { body = await r.json(); } catch (e) { /* not JSON: the status says enough */ }
    return {status: r.status, body};
  }
  async function loadLink() {
    show("loading");
    let answer;
    try {
      answer = await fetchInfo();
    } catch (e) {  // offline: the questions this phone saw last time, if any
      const kept = localStorage.getItem(INFO_KEY);
      if (kept) {
        useInfo(JSON.parse(kept));
        setStatus("网络不通：评价会先保存在本机，联网后自动提交。", true);
        show("choose");
      } else {
        fail("网络连接失败，请检查网络后重试。");
      }
      return;
    }
    if (answer.status === 200) {
      localStorage.setItem(INFO_KEY, JSON.stringify(answer.body));
      useInfo(answer.body);
      show("choose");
    } else if (answer.status === 401) {
      fail(EXPIRED);
    } else if (answer.status === 409) {
      fail(REASONS[answer.body.error] || REASONS.round_closed);
    } else if (answer.status === 429) {
      fail("访问过于频繁，请稍后再试。");
    } else {
      fail("服务暂时不可用，请稍后重试。");
    }
  }
  async function refreshParticipants() {
    try {
      const answer = await fetchInfo();
      if (answer.status === 200) {
        localStorage.setItem(INFO_KEY, JSON.stringify(answer.body));
        setParticipants(answer.body.participants);
      }
    } catch (e) { /* the count can wait */ }
  }

  // -- the queue shared with the kiosk ------------------------------------------------------
  let waitingFor = null;  // the response_id this visit submitted
  const queue = SurveyQueue.create({
    key: QUEUE_KEY,
    url: () => info ? `/api/v1/rounds/${encodeURIComponent(info.round_id)}/surveys/batch` : null,
    token: () => token,
    onPending: (n) => { $("pending").textContent = String(n); },
    onStatus: (state, detail) => {
      const reason = detail.body && detail.body.error;
      if (state === "online") setStatus("");
      else if (state === "offline") setStatus("网络不通：评价已保存在本机，联网后自动提交。", true);
      else if (state === "throttled") setStatus("提交过于频繁，请稍后再试。评价已保存在本机，将自动重试。", true);
      else if (state === "error") setStatus("服务暂时不可用，评价已保存在本机，将自动重试。", true);
      else if (state === "auth" || state === "closed") {
        const text = state === "auth"
          ? (detail.status === 401 ? EXPIRED : "此链接不能提交这份评价，请向社区工作人员核实。")
          : REASONS[reason] || "暂时无法提交，将自动重试。";
        if (waitingFor && (state === "auth" || REASONS[reason])) {  // said once, on the screen of this answer
          waitingFor = null;
          setStatus("");
          refuse(text);
        } else if (!$("refused").classList.contains("active")) {
          setStatus(text, true);
        }
      }
    },
    onResults: (results) => {
      const mine = results.find((x) => x.response_id === waitingFor);
      if (!mine) return;
      waitingFor = null;
      if (mine.status === "created" || mine.status === "duplicate") {
        $("thanks-text").textContent = "您的评价已提交。";
        show("thanks");
        refreshParticipants();
      } else if (mine.status === "invalid") {
        refuse(invalidText(mine.errors));
      } else {
        refuse(REASONS[mine.error] || "未能提交，请稍后再试。");
      }
    },
  });

  // -- the questions ---------------------------------------------------------------------
  let respondent = null, household = null, steps = [], answers = {}, overall = null, step = 0;

  function renderStep() {
    const q = steps[step];
    $("q-progress").textContent = `第 ${step + 1} 题 / 共 ${steps.length} 题`;
    $("q-title").textContent = q.name_zh || "";
    $("q-text").textContent = q.question_zh;
    show("question");
  }
  function begin() {
    steps = info.questions.concat([{code: null, name_zh: "总体评价", question_zh: info.overall_question}]);
    answers = {}; overall = null; step = 0;
    renderStep();
  }
  function answer(level) {
    const q = steps[step];
    if (q.code) answers[q.code] = level; else overall = level;
    step += 1;
    if (step < steps.length) renderStep(); else finish();
  }
  function finish() {
    if (!Object.values(answers).some((v) => v !== null) && !overall) {
      refuse("您没有回答任何问题，评价未提交。");
      return;
    }
    const response = {
      response_id: SurveyQueue.uuid4(),
      community_id: info.community_id,
      respondent_type: respondent,
      channel: "online",
      submitted_at: new Date().toISOString(),
      answers: answers,
      overall: overall,
    };
    if (respondent === "resident") response.household_ref = household;
    waitingFor = response.response_id;
    queue.push(response);
    if (navigator.onLine) {
      $("sending-text").textContent = "请稍候。";
      show("sending");
    } else {  // nothing more to wait for now: it is kept and sent when the phone is online again
      $("thanks-text").textContent = "您的评价已保存在本机，联网后将自动提交，请勿清除浏览器数据。";
      show("thanks");
    }
  }

  $("as-resident").addEventListener("click", () => {
    respondent = "resident";
    $("household-error").textContent = "";
    show("household-screen");
  });
  $("as-public").addEventListener("click", () => { respondent = "public"; household = null; begin(); });
  $("household-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("household").value.trim();
    // a letter or digit somewhere (no \p{…} classes: older WeChat browsers cannot parse them)
    if (!value.replace(/[\s!-\/:-@\[-`{-~\u3000-\u303f\uff01-\uff0f\uff1a-\uff20]/g, "")) {
      $("household-error").textContent = "请填写门牌号，如 7-3-501。";
      $("household").focus();
      return;
    }
    household = value;
    begin();
  });
  $("household-back").addEventListener("click", () => show("choose"));
  document.querySelectorAll(".answer").forEach((b) =>
    b.addEventListener("click", () => answer(Number(b.dataset.level))));
  $("skip").addEventListener("click", () => answer(null));
  $("back").addEventListener("click", () => {
    if (step > 0) { step -= 1; renderStep(); } else show(respondent === "resident" ? "household-screen" : "choose");
  });
  $("retry-load").addEventListener("click", loadLink);
  $("refused-again").addEventListener("click", () => { setStatus(""); show("choose"); });

  queue.refresh();
  loadLink().then(() => queue.schedule(500));
})();

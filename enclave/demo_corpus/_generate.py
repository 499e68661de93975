"""Generate the binary files of the demo corpus (PDF, DOCX, PPTX, XLSX) from the text below.

Run from anywhere: `.venv/bin/python enclave/demo_corpus/_generate.py`. The outputs are committed;
the script is deterministic (fixed document properties and zip timestamps), so running it again
on the same library versions gives byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

from docx import Document
from docx.shared import Pt
from openpyxl import Workbook
from openpyxl.styles import Font
from pptx import Presentation
from pptx.util import Inches
from pptx.util import Pt as PptPt

HERE = Path(__file__).resolve().parent
AUTHOR = "Harbourview Port Authority"
FIXED_TIME = dt.datetime(2026, 1, 15, 9, 0, 0)
FIXED_ZIP_TIME = (2026, 1, 15, 9, 0, 0)
FIXED_W3CDTF = "2026-01-15T09:00:00Z"

# A document is a list of blocks: (kind, text). Kinds: title, meta, h1, h2, p, bullet.
Block = tuple[str, str]


# --------------------------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------------------------

VISITOR_SAFETY: list[Block] = [
    ("title", "Visitor and Port Safety Rules"),
    ("meta", "Standard SF-01, version 5.0. Owner: Harbour Master (Captain Tomas Brevik). "
             "Effective 1 November 2025. Applies to all staff, contractors, visitors and port users."),
    ("h1", "1. Purpose and scope"),
    ("p", "The Port of Harbourview is a working port. Ships, cranes, straddle carriers, trucks and "
          "trains move around the clock, and the quay edge is always close by. These rules keep "
          "everyone who comes onto Harbourview Port Authority (HPA) land and water safe. They apply "
          "in every operational area: North Mole Container Terminal, Kestrel Bay Bulk Terminal, "
          "Saltmarket Wharf, the Fairlight Head pilot station and all HPA roads and wharves. "
          "Harbour House offices follow the building rules in section 9 only."),
    ("p", "Every person on site has the right and the duty to stop work they believe is unsafe. "
          "Nobody will be criticised for stopping a job in good faith."),
    ("h1", "2. Before you arrive"),
    ("bullet", "Visits to operational areas must be booked by the host through the Pass Office at "
               "least 48 hours in advance. Same-day visits need approval from the Duty Port "
               "Operations Manager."),
    ("bullet", "Every visitor must bring photo identification (passport, national identity card or "
               "driving licence). Visitors without photo identification will not be given a pass."),
    ("bullet", "Contractors must have completed the HPA online site induction within the last 12 "
               "months and must bring their induction number."),
    ("bullet", "Children under 16 are not allowed in operational areas, except on organised public "
               "open days."),
    ("h1", "3. Passes and escorts"),
    ("p", "Passes are issued at the Pass Office on the ground floor of Harbour House. The pass must "
          "be worn visibly above the waist at all times and handed back when you leave."),
    ("bullet", "Red pass: escorted visitor. A red pass holder must stay with an HPA escort at all "
               "times. One escort may accompany at most 5 visitors."),
    ("bullet", "Blue pass: inducted contractor. May work unescorted, but only in the areas printed "
               "on the pass and only during the hours of the work permit."),
    ("bullet", "Green pass: HPA staff and port user staff with a valid security clearance."),
    ("p", "Lost passes must be reported to the Pass Office or the Port Operations Centre at once. "
          "Passes expire automatically at midnight on the last day printed on them."),
    ("h1", "4. Personal protective equipment"),
    ("p", "The minimum personal protective equipment (PPE) in every operational area is:"),
    ("bullet", "a high-visibility vest or jacket, Class 2 or higher, in orange;"),
    ("bullet", "safety boots with toe protection and slip-resistant soles;"),
    ("bullet", "a hard hat in the container yard, under cranes and on any construction site;"),
    ("bullet", "a life jacket whenever you are within 2 metres of an unfenced quay edge, on a "
               "pontoon, or on any vessel or pilot launch;"),
    ("bullet", "hearing protection where signs require it, including near the Kestrel Bay grain "
               "conveyors and cement silos."),
    ("p", "The Pass Office lends PPE to visitors free of charge. Contractors must bring their own."),
    ("h1", "5. Traffic and moving equipment"),
    ("bullet", "The speed limit on HPA terminal roads is 25 km/h. On quay aprons and inside the "
               "container yard it is 10 km/h."),
    ("bullet", "Pedestrians must use the marked green walkways and crossings. Never walk in the "
               "container stacks or along straddle carrier lanes."),
    ("bullet", "Straddle carriers, reach stackers and rail movements always have right of way. "
               "Make eye contact with the driver before you cross in front of any machine."),
    ("bullet", "Never stand or walk under a suspended load. Keep at least 10 metres from a crane "
               "spreader that is moving."),
    ("bullet", "Private vehicles may only use the visitor car park at Harbour House unless the "
               "pass allows otherwise. Vehicles must be left unlocked with keys in them when "
               "parked on a quay, so that they can be moved in an emergency."),
    ("h1", "6. Restricted and security areas"),
    ("p", "The port is a secure facility under the International Ship and Port Facility Security "
          "(ISPS) Code. Restricted areas are marked with red and white signs. Entry without the "
          "right pass is an offence under the Harbourview Port Act 1971 and will be reported to "
          "the Port Police. You may be asked to show your pass at any time; you must also allow "
          "bags and vehicles to be searched at security gates."),
    ("p", "Photography is allowed in public areas. Photographs or video inside restricted areas "
          "need the written permission of the Port Security Officer. Drones may only be flown "
          "with a permit from the Harbour Master, applied for at least 5 working days ahead."),
    ("h1", "7. Emergencies"),
    ("p", "The HPA emergency number is extension 4400 from any HPA phone, or 041 555 4400 from a "
          "mobile phone. It is answered by the Port Operations Centre 24 hours a day. In a fire, "
          "call 4400 first, then the national emergency services."),
    ("p", "Port alarms have two signals:"),
    ("bullet", "Intermittent siren (1 second on, 1 second off): prepare to evacuate. Stop work, "
               "make equipment safe and listen for instructions."),
    ("bullet", "Continuous siren: evacuate now to your muster point by the nearest safe route."),
    ("p", "Muster points:"),
    ("bullet", "MP1: Harbour House visitor car park (Harbour House, Saltmarket Wharf)."),
    ("bullet", "MP2: North Mole main gate, outside the gatehouse (North Mole Container Terminal, "
               "Signal Tower)."),
    ("bullet", "MP3: Kestrel Bay weighbridge (Kestrel Bay Bulk Terminal)."),
    ("bullet", "MP4: Fairlight Head car park (pilot station)."),
    ("p", "Escorts are responsible for accounting for their visitors at the muster point. Do not "
          "leave the muster point until a fire warden or the Duty Port Operations Manager gives "
          "the all clear."),
    ("p", "Person in the water: shout \"person overboard\", throw the nearest life ring, keep "
          "the person in sight and call 4400. Do not go into the water yourself."),
    ("h1", "8. Reporting incidents and hazards"),
    ("p", "Every injury, near miss, spill, damage to property or unsafe condition must be reported "
          "to your host or supervisor straight away and recorded in the SafeHarbour reporting "
          "form within 24 hours. Oil or chemical spills on water must be reported to the Port "
          "Operations Centre immediately on extension 4400 or VHF channel 12 so the marine "
          "pollution response team can be sent."),
    ("h1", "9. Harbour House building rules"),
    ("bullet", "Sign in at reception and wear your pass. Visitors must be met at reception by "
               "their host."),
    ("bullet", "Fire alarms at Harbour House are tested every Wednesday at 10:00. If the alarm "
               "sounds at any other time, leave by the nearest exit and go to MP1."),
    ("bullet", "Smoking and vaping are allowed only in the marked shelter behind the car park."),
    ("h1", "10. Alcohol, drugs and fatigue"),
    ("p", "HPA has a zero tolerance approach to alcohol and drugs in operational areas. Nobody may "
          "enter an operational area, drive a vehicle or operate equipment while affected by "
          "alcohol, drugs or medication that can impair judgement. Staff and contractors in "
          "safety-critical roles are subject to random testing. Anyone who is too tired to work "
          "safely must tell their supervisor before starting work."),
    ("h1", "11. Breaches"),
    ("p", "A person who breaks these rules may be asked to leave the port and may have their pass "
          "withdrawn. Serious or repeated breaches by contractors are reported to their employer. "
          "Questions about these rules go to the Harbour Master's office, extension 4500."),
]

PROCUREMENT: list[Block] = [
    ("title", "Procurement and Purchasing Policy"),
    ("meta", "Policy FP-03, version 4.2. Owner: Chief Financial Officer (Rajiv Anand). Approved by "
             "the Board on 26 June 2025. Effective 1 July 2025. Classification: Confidential, "
             "Finance and Procurement."),
    ("h1", "1. Purpose"),
    ("p", "This policy sets how Harbourview Port Authority (HPA) buys goods, services and works, "
          "so that public money is spent fairly, openly and with value for money. It applies to "
          "every purchase made by or on behalf of HPA, whatever the source of funds, except "
          "employment contracts, property leases granted by HPA and payments to other public "
          "bodies under statute."),
    ("h1", "2. Principles"),
    ("bullet", "Value for money over the whole life of the contract, not only the lowest price."),
    ("bullet", "Open and fair competition: suppliers are treated equally and given the same "
               "information at the same time."),
    ("bullet", "Separation of duties: the person who raises a requisition may not approve it, and "
               "nobody may approve a payment to themselves or to a supplier they have declared an "
               "interest in."),
    ("bullet", "Records: every procurement decision is documented and kept for 7 years."),
    ("h1", "3. Quotation and tender thresholds"),
    ("p", "The estimated value of a purchase is its total value over the full term of the "
          "contract, including all extension options, excluding Value Added Tax. The estimate "
          "decides which of the following methods must be used."),
    ("bullet", "Under 5,000 HVD: one quote, which may be verbal. A purchasing card may be used."),
    ("bullet", "5,000 HVD to 24,999 HVD: at least two written quotes."),
    ("bullet", "25,000 HVD to 249,999 HVD: at least three written quotes, with a short written "
               "evaluation recording why the chosen supplier gives best value."),
    ("bullet", "250,000 HVD and above: open public tender on the Halvard Public Tenders Portal "
               "(HPTP), advertised for at least 21 calendar days."),
    ("p", "The threshold for three written quotes is therefore 25,000 HVD, and the open tender "
          "threshold is 250,000 HVD. Written quotes must be on the supplier's letterhead or sent "
          "from the supplier's business email address, and must be attached to the requisition "
          "in the Ledger finance system."),
    ("h2", "3.1 Contract splitting"),
    ("p", "A requirement must not be divided into smaller orders to bring it under a threshold. "
          "Repeat purchases of the same goods or services within 12 months are added together "
          "when deciding the method. Finance and Procurement reviews spend by supplier every "
          "quarter and reports suspected splitting to the Audit and Risk Committee."),
    ("h1", "4. Financial delegations"),
    ("p", "Purchases must be approved in Ledger, before the order is placed, by a person holding "
          "a delegation equal to or above the total contract value:"),
    ("bullet", "Team leaders: up to 5,000 HVD."),
    ("bullet", "Managers: up to 25,000 HVD."),
    ("bullet", "Division Directors: up to 250,000 HVD."),
    ("bullet", "Chief Financial Officer: up to 500,000 HVD."),
    ("bullet", "Chief Executive: up to 2,000,000 HVD."),
    ("bullet", "The Board: above 2,000,000 HVD, and any contract longer than 7 years."),
    ("h1", "5. Open tenders"),
    ("p", "For purchases of 250,000 HVD and above the Procurement team runs the tender. The "
          "requesting division provides the specification and the evaluation criteria, which must "
          "be published with the tender and include price with a weighting of at least 30 per "
          "cent. Bids are evaluated by a panel of at least three people, including at least one "
          "member from outside the requesting division. Every panel member signs a conflict of "
          "interest declaration before seeing the bids. Tenders above 2,000,000 HVD also need an "
          "independent probity adviser appointed by the Chief Financial Officer."),
    ("p", "Late bids are not accepted. Unsuccessful bidders are told the outcome in writing and "
          "offered a debrief within 20 working days of the award."),
    ("h1", "6. Exemptions"),
    ("h2", "6.1 Sole source"),
    ("p", "Where only one supplier can meet the need (for example spare parts for existing crane "
          "controls, or software licences tied to an installed system), the quotation rules may "
          "be waived using a Sole Source Justification (form FP-07). The form must be approved "
          "by the Chief Financial Officer before the order is placed, whatever the value."),
    ("h2", "6.2 Emergencies"),
    ("p", "In an emergency that threatens life, the environment, or the safe operation of the "
          "port, the Harbour Master or the Duty Port Operations Manager may commit up to 100,000 "
          "HVD without quotes. The commitment must be recorded in Ledger and ratified by the "
          "Chief Financial Officer within 5 working days. Emergency commitments above 100,000 "
          "HVD need the verbal approval of the Chief Executive, confirmed in writing afterwards."),
    ("h1", "7. Purchasing cards"),
    ("p", "Purchasing cards are issued to named staff for low-value purchases. The single "
          "transaction limit is 2,500 HVD and the monthly limit is 10,000 HVD. Cards must not be "
          "used for travel (which is booked through the Compass Travel Desk), for cash "
          "withdrawals, or for anything covered by an existing HPA contract. Cardholders "
          "reconcile their statement in Ledger by the 10th of the following month; cards with "
          "two late reconciliations in a year are suspended."),
    ("h1", "8. Paying suppliers"),
    ("p", "HPA standard payment terms are 30 days from receipt of a valid tax invoice that quotes "
          "an HPA purchase order number. Registered small businesses (fewer than 20 employees) "
          "are paid within 14 days. Different terms may be agreed in a contract only with the "
          "approval of the Chief Financial Officer and are recorded in the supplier payment terms "
          "register. Invoices without a purchase order number are returned to the supplier. "
          "Payment runs are made every Tuesday and Friday."),
    ("h1", "9. Conflicts of interest, gifts and hospitality"),
    ("p", "Staff involved in a procurement must declare any personal or financial interest in a "
          "supplier before taking part, using the Declarations register. Gifts or hospitality "
          "offered by a current or potential supplier with a value over 100 HVD must be declined "
          "and recorded in the Gifts Register. During an open tender no gifts or hospitality of "
          "any value may be accepted from any bidder."),
    ("h1", "10. Contract register and reporting"),
    ("p", "Every contract with a value of 25,000 HVD or more is entered in the contract register "
          "within 10 working days of signature. Contracts of 250,000 HVD or more are published "
          "on the HPTP within 30 days of award. The Chief Financial Officer reports procurement "
          "exemptions, emergency commitments and contract register statistics to the Audit and "
          "Risk Committee every quarter."),
    ("h1", "11. Breaches and contacts"),
    ("p", "Purchases that do not follow this policy may not be paid until they are ratified by "
          "a delegate at the next level above the one required. Suspected fraud must be reported "
          "to the Chief Financial Officer or through the confidential integrity line. Procurement "
          "team: extension 4120, procurement@harbourviewport.example."),
]

DISCIPLINARY: list[Block] = [
    ("title", "Disciplinary Procedure"),
    ("meta", "Procedure HR-09, version 2.3. Owner: Director of People and Culture (Ingrid Solberg). "
             "Effective 1 March 2025. Agreed with the Halvard Maritime and Transport Union (HMTU). "
             "Classification: Confidential, People and Culture."),
    ("h1", "1. Purpose and scope"),
    ("p", "This procedure sets out how Harbourview Port Authority (HPA) deals with concerns about "
          "an employee's conduct. It applies to all employees who have completed their 6-month "
          "probation period. Concerns about employees still on probation are handled under the "
          "probation procedure HR-05. Concerns about performance or capability, rather than "
          "conduct, are handled under the capability procedure HR-10."),
    ("h1", "2. Principles"),
    ("bullet", "Issues are dealt with promptly, consistently and fairly."),
    ("bullet", "No disciplinary action is taken until the matter has been investigated."),
    ("bullet", "The employee is told in writing what the allegation is and sees the evidence "
               "before any hearing."),
    ("bullet", "The employee has the right to be accompanied at any formal meeting by a "
               "colleague or a representative of the HMTU or another union."),
    ("bullet", "Nobody is dismissed for a first breach of discipline, except in cases of gross "
               "misconduct."),
    ("bullet", "The employee has the right to appeal against any formal outcome."),
    ("h1", "3. Informal resolution"),
    ("p", "Minor conduct concerns are usually best dealt with by the line manager in a private, "
          "informal conversation, with a note of the agreed improvement kept by the manager for "
          "6 months. An informal conversation is not a disciplinary sanction and is not recorded "
          "on the employee's personal file."),
    ("h1", "4. Investigation"),
    ("p", "Where a concern is too serious for informal resolution, or informal resolution has "
          "not worked, the line manager asks People and Culture to appoint an investigator. The "
          "investigator must not be the employee's line manager and must have had no involvement "
          "in the events. The employee is told in writing that an investigation has started and "
          "what it is about."),
    ("p", "Investigations should normally be completed within 15 working days. If more time is "
          "needed the employee is told why and given a new date. The investigator writes a report "
          "that recommends one of: no further action, informal resolution, or a disciplinary "
          "hearing."),
    ("h2", "4.1 Suspension"),
    ("p", "An employee may be suspended on full pay while an allegation of gross misconduct is "
          "investigated, or where their presence could hinder the investigation or put people at "
          "risk. Suspension is approved by the Director of People and Culture, is not a "
          "disciplinary sanction and implies no judgement. It is reviewed at least every 10 "
          "working days. A suspended employee keeps access to the Employee Assistance Programme "
          "and has a named People and Culture contact."),
    ("h1", "5. Disciplinary hearing"),
    ("p", "The employee is invited to the hearing in writing at least 5 working days before it "
          "takes place. The letter sets out the allegations, the possible outcomes, the "
          "employee's right to be accompanied, and includes the investigation report and "
          "evidence. The hearing is chaired by a manager at least one grade above the employee's "
          "line manager, with a People and Culture adviser present. The employee may respond to "
          "the allegations, present evidence and call witnesses. If the employee or their "
          "companion cannot attend, the hearing is rearranged once, to a date within 5 working "
          "days of the original date."),
    ("p", "The chair confirms the decision and the reasons in writing within 5 working days of "
          "the hearing."),
    ("h1", "6. Outcomes"),
    ("p", "The outcomes available after a hearing are:"),
    ("bullet", "No action."),
    ("bullet", "First written warning. It stays live on the personal file for 12 months."),
    ("bullet", "Final written warning. It stays live for 18 months and states that further "
               "misconduct may lead to dismissal."),
    ("bullet", "Dismissal with notice, where there is a live final written warning and further "
               "misconduct is found."),
    ("bullet", "Summary dismissal, without notice or pay in lieu of notice, for gross misconduct."),
    ("p", "As an alternative to dismissal the chair may offer demotion by one grade or transfer "
          "to another role together with a final written warning. Once a warning has expired it "
          "is disregarded in any later disciplinary decision."),
    ("h2", "6.1 Examples of gross misconduct"),
    ("p", "The following are examples of gross misconduct. The list is not complete."),
    ("bullet", "Theft, fraud, or deliberate falsification of records, timesheets or expense "
               "claims."),
    ("bullet", "Violence, threats of violence, bullying, harassment or discrimination."),
    ("bullet", "Being unfit for duty through alcohol or drugs, confirmed by a positive test "
               "under the Fitness for Duty Standard HR-21."),
    ("bullet", "A serious breach of safety rules that puts people at risk, such as entering an "
               "exclusion zone under a suspended load or disabling a safety device."),
    ("bullet", "Deliberate disclosure of Restricted information, including port security plans, "
               "or serious misuse of HPA IT systems."),
    ("bullet", "Accepting a bribe or an undeclared gift from a supplier or port user."),
    ("h1", "7. Appeals"),
    ("p", "The employee may appeal against any formal outcome by writing to the Director of "
          "People and Culture within 7 working days of receiving the written decision, giving "
          "the grounds of appeal. The appeal is heard by a Division Director who was not involved "
          "earlier, normally within 15 working days of receiving the appeal. The appeal decision "
          "is confirmed in writing within 10 working days of the appeal hearing and is final."),
    ("h1", "8. Union representatives"),
    ("p", "Where disciplinary action is being considered against an accredited union "
          "representative, People and Culture informs a full-time official of the union, with "
          "the employee's agreement, before any formal action is taken."),
    ("h1", "9. Records"),
    ("p", "Investigation reports, hearing notes and outcome letters are kept on the employee's "
          "personal file, which only People and Culture can see. Records of cases that ended in "
          "no action are removed after 6 months. The Director of People and Culture reports the "
          "number and type of cases, without names, to the Executive Leadership Team every "
          "quarter."),
]

TRAVEL_POLICY: list[Block] = [
    ("title", "Staff Travel and Expenses Policy"),
    ("meta", "Policy CS-04, version 5.1. Owner: Director of Corporate Affairs (Lucas Ferreira-Quinn). "
             "Effective 1 July 2025. Applies to all employees and to contractors travelling at "
             "HPA expense."),
    ("h1", "1. Purpose"),
    ("p", "This policy explains how to plan, approve, book and claim for travel on Harbourview "
          "Port Authority business. Travel should be necessary, safe and economical. Consider "
          "a video call first."),
    ("h1", "2. Approval"),
    ("bullet", "Travel within Halvard: approved by your line manager."),
    ("bullet", "Travel outside Halvard: approved by your Division Director and the Chief "
               "Executive, at least 4 weeks before departure."),
    ("bullet", "Travel by members of the Executive Leadership Team: approved by the Chief "
               "Executive. The Chief Executive's travel is approved by the Chair of the Board."),
    ("h1", "3. Booking"),
    ("p", "All flights, trains and hotels are booked through the Compass Travel Desk (extension "
          "4290, travel@harbourviewport.example) at least 14 days before departure where "
          "possible. Bookings made directly with airlines or hotels are not reimbursed unless the "
          "Travel Desk was closed and the travel was urgent."),
    ("h2", "3.1 Class of travel"),
    ("bullet", "Flights of less than 6 hours: economy class."),
    ("bullet", "Flights of 6 hours or more: premium economy class."),
    ("bullet", "Business class: only for flights of more than 10 hours, with the prior written "
               "approval of the Chief Executive."),
    ("bullet", "Rail: standard class. First class is allowed for journeys over 3 hours where the "
               "fare is no more than 20 per cent above standard class."),
    ("h2", "3.2 Accommodation limits"),
    ("p", "The nightly hotel limits, including breakfast and taxes, are:"),
    ("table", "Location|Nightly limit (HVD)\n"
              "Aldmoor (capital city)|240\n"
              "Elsewhere in Halvard|180\n"
              "Overseas, Zone A|260\n"
              "Overseas, Zone B|340"),
    ("h1", "4. Daily allowances (per diem)"),
    ("p", "A daily allowance covers meals and incidental costs. No receipts are needed for it."),
    ("table", "Type of travel|Daily allowance (HVD)\n"
              "Day trip within Halvard, away more than 10 hours|35\n"
              "Overnight travel within Halvard|85\n"
              "Overseas, Zone A|120\n"
              "Overseas, Zone B|165"),
    ("p", "Zone lists are kept by the Compass Travel Desk and reviewed every January. Where "
          "meals are provided (for example at a conference), the allowance is reduced by 30 per "
          "cent for each meal provided."),
    ("h1", "5. Ground transport"),
    ("bullet", "Use an HPA pool car where one is available. Pool cars are booked through "
               "fleet@harbourviewport.example."),
    ("bullet", "Use of a private car is reimbursed at 0.62 HVD per kilometre, up to 600 km per "
               "trip. You must hold business-use insurance."),
    ("bullet", "Taxis and ride-hailing services may be used where public transport is "
               "impractical, unsafe, or between 22:00 and 06:00."),
    ("bullet", "Parking and tolls are reimbursed with receipts. Traffic and parking fines are not."),
    ("h1", "6. Claiming expenses"),
    ("p", "Claims are made in the Ledger expense system within 30 days of returning. Attach an "
          "itemised receipt for every item above 20 HVD. Claims older than 90 days are not paid. "
          "Alcohol, personal entertainment, minibar items, laundry on trips shorter than 5 nights "
          "and airline loyalty upgrades are not reimbursed. Approved claims are paid with the "
          "next fortnightly pay run."),
    ("h1", "7. Safety and insurance"),
    ("p", "All travellers are covered by the HPA corporate travel insurance when the trip is "
          "booked through the Compass Travel Desk. Travel to a destination with a Halvard Foreign "
          "Office advisory of level 3 or higher needs a security briefing from Corporate Affairs "
          "before approval. In an emergency abroad call the Compass 24-hour line, which is "
          "printed on the back of your HPA identity card."),
]

PARENTAL_LEAVE: list[Block] = [
    ("title", "Parental Leave Policy"),
    ("meta", "Policy HR-14, version 3.0. Owner: Director of People and Culture (Ingrid Solberg). "
             "Effective 1 January 2026. Classification: Confidential, People and Culture."),
    ("h1", "1. Purpose and who it covers"),
    ("p", "Harbourview Port Authority supports employees to care for a new child. This policy "
          "covers birth, adoption of a child under 16 and surrogacy arrangements. It applies to "
          "permanent employees and to fixed-term employees whose contract runs past the expected "
          "date of birth or placement."),
    ("h1", "2. Paid leave"),
    ("h2", "2.1 Primary carer leave"),
    ("p", "The primary carer is the parent with main responsibility for the care of the child. "
          "A primary carer with at least 12 months of continuous service at the expected date of "
          "birth or placement receives 26 weeks of parental leave at full pay. A primary carer "
          "with less than 12 months of service receives 10 weeks at full pay."),
    ("h2", "2.2 Secondary carer leave"),
    ("p", "A secondary carer (partner leave) receives 4 weeks at full pay, whatever their length "
          "of service. It may be taken in up to two blocks at any time within 12 months of the "
          "birth or placement."),
    ("h2", "2.3 Unpaid leave"),
    ("p", "Either parent may extend their leave without pay so that their total parental leave, "
          "paid and unpaid, is up to 104 weeks (2 years) from the date of birth or placement."),
    ("h1", "3. Pay and benefits during leave"),
    ("bullet", "Full pay means base salary plus any regular shift allowance averaged over the "
               "previous 12 weeks. Overtime is not included."),
    ("bullet", "Paid parental leave may be taken at half pay over twice the period, for example "
               "52 weeks at half pay instead of 26 weeks at full pay."),
    ("bullet", "HPA continues its employer superannuation contribution of 11.5 per cent during "
               "paid leave and during the first 52 weeks of any unpaid leave."),
    ("bullet", "Annual leave continues to accrue during paid parental leave."),
    ("bullet", "Pregnant employees may attend antenatal appointments in paid time."),
    ("h1", "4. Notice and how to apply"),
    ("p", "Tell your line manager and apply through the Crew people portal using form PC-12 at "
          "least 10 weeks before the expected date of birth or placement. Attach a medical "
          "certificate showing the expected date, or the adoption or surrogacy documents. People "
          "and Culture confirms your entitlement in writing within 10 working days."),
    ("h1", "5. Keeping in touch"),
    ("p", "You may work up to 10 paid keeping-in-touch (KIT) days during your leave without "
          "ending it, for example for training or team days. KIT days are agreed in advance with "
          "your manager and are paid at your normal daily rate in addition to any parental leave "
          "pay."),
    ("h1", "6. Returning to work"),
    ("bullet", "You have the right to return to the same role, or to an equivalent role at the "
               "same grade and pay if your role no longer exists."),
    ("bullet", "Harbour Return: for the first 4 weeks back you may work 80 per cent of your "
               "usual hours on full pay."),
    ("bullet", "You may ask for flexible working on return. Requests are answered in writing "
               "within 21 days."),
    ("bullet", "A private lactation room is available at Harbour House, level 2, and at the "
               "Signal Tower, level 1."),
    ("h1", "7. Pregnancy loss"),
    ("p", "An employee who experiences stillbirth after 20 weeks of pregnancy, or whose baby dies "
          "after birth, keeps their full paid primary carer entitlement. Their partner keeps "
          "the full secondary carer entitlement. An employee who experiences pregnancy loss "
          "before 20 weeks receives 5 days of paid compassionate leave, as does their partner."),
    ("h1", "8. Contacts"),
    ("p", "People and Culture advisory team: extension 4020, people@harbourviewport.example. "
          "The Anchor Employee Assistance Programme is free and confidential for employees and "
          "their families."),
]


# --------------------------------------------------------------------------------------------
# A small PDF writer: standard Helvetica fonts, WinAnsi text, one content stream per page.
# --------------------------------------------------------------------------------------------

# Advance widths (1/1000 em) of the standard Type 1 fonts for ASCII 32..126, from the Adobe AFMs.
_HELVETICA = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
]
_HELVETICA_BOLD = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
]
# The few characters above ASCII we use, as (WinAnsi byte, Helvetica width, Helvetica-Bold width).
_WINANSI_EXTRA = {"\u2022": (0x95, 350, 350), "\u2013": (0x96, 556, 556)}

PAGE_W, PAGE_H = 595, 842
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 64, 64, 72, 72
TEXT_W = PAGE_W - MARGIN_L - MARGIN_R

# kind -> (font resource, size, leading, space before)
_STYLES = {
    "title": ("F2", 18.0, 24.0, 0.0),
    "meta": ("F1", 9.0, 12.0, 4.0),
    "h1": ("F2", 13.0, 17.0, 12.0),
    "h2": ("F2", 11.0, 15.0, 8.0),
    "p": ("F1", 10.5, 14.0, 5.0),
    "bullet": ("F1", 10.5, 14.0, 3.0),
}
BULLET_INDENT = 16


def _char_width(ch: str, font: str) -> int:
    if ch in _WINANSI_EXTRA:
        _, regular, bold = _WINANSI_EXTRA[ch]
        return bold if font == "F2" else regular
    code = ord(ch)
    if not 32 <= code <= 126:
        raise ValueError(f"character {ch!r} is not in the PDF writer's WinAnsi subset")
    table = _HELVETICA_BOLD if font == "F2" else _HELVETICA
    return table[code - 32]


def _text_width(text: str, font: str, size: float) -> float:
    return sum(_char_width(ch, font) for ch in text) * size / 1000.0


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and _text_width(candidate, font, size) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _pdf_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _WINANSI_EXTRA:
            out.append(f"\\{_WINANSI_EXTRA[ch][0]:03o}")
        elif ch in "\\()":
            out.append("\\" + ch)
        else:
            _char_width(ch, "F1")  # rejects anything outside the subset
            out.append(ch)
    return "(" + "".join(out) + ")"


def _layout(blocks: Sequence[Block], short_title: str) -> list[list[str]]:
    """Lay blocks out into pages; each page is a list of content-stream operator lines."""
    pages: list[list[str]] = [[]]
    y = PAGE_H - MARGIN_T

    def new_page() -> None:
        nonlocal y
        pages.append([])
        y = PAGE_H - MARGIN_T
        pages[-1].append(_text_op("F1", 8.0, MARGIN_L, PAGE_H - 40, f"{AUTHOR} \u2013 {short_title}"))

    def emit(font: str, size: float, x: float, text: str) -> None:
        pages[-1].append(_text_op(font, size, x, y, text))

    for kind, text in blocks:
        if kind == "table":
            # Tables only appear in DOCX content; in a PDF render each row as a plain line.
            rows = [row.replace("|", ": ") for row in text.split("\n")[1:]]
            for row in rows:
                if y - 14 < MARGIN_B:
                    new_page()
                y -= 14
                emit("F1", 10.5, MARGIN_L + BULLET_INDENT, row)
            continue
        font, size, leading, before = _STYLES[kind]
        indent = BULLET_INDENT if kind == "bullet" else 0
        lines = _wrap(text, font, size, TEXT_W - indent)
        # Keep a heading with two lines of what follows, and a paragraph's first two lines together.
        if kind in ("title", "h1", "h2"):
            need = before + leading * (len(lines) + 2)
        else:
            need = before + leading * min(len(lines), 2)
        if y - need < MARGIN_B and pages[-1]:
            new_page()
        elif y != PAGE_H - MARGIN_T:
            y -= before
        for i, line in enumerate(lines):
            if y - leading < MARGIN_B:
                new_page()
            y -= leading
            if kind == "bullet" and i == 0:
                pages[-1].append(_bullet_op(MARGIN_L + 6, y + size * 0.3))
            emit(font, size, MARGIN_L + indent, line)
        # Extra space after headings keeps pdfminer from merging a heading into the next block.
        if kind in ("title", "h1", "h2"):
            y -= 4
    total = len(pages)
    for number, page in enumerate(pages, start=1):
        footer = f"Page {number} of {total}"
        x = PAGE_W - MARGIN_R - _text_width(footer, "F1", 8.0)
        page.append(_text_op("F1", 8.0, x, 40, footer))
    return pages


def _bullet_op(cx: float, cy: float, r: float = 1.9) -> str:
    """A filled circle drawn as a path. A bullet glyph would start the first line of an item left
    of its continuation lines, and pdfminer then splits the item into separate text boxes."""
    k = 0.5523 * r
    return (
        f"q 0 g {cx + r:.2f} {cy:.2f} m "
        f"{cx + r:.2f} {cy + k:.2f} {cx + k:.2f} {cy + r:.2f} {cx:.2f} {cy + r:.2f} c "
        f"{cx - k:.2f} {cy + r:.2f} {cx - r:.2f} {cy + k:.2f} {cx - r:.2f} {cy:.2f} c "
        f"{cx - r:.2f} {cy - k:.2f} {cx - k:.2f} {cy - r:.2f} {cx:.2f} {cy - r:.2f} c "
        f"{cx + k:.2f} {cy - r:.2f} {cx + r:.2f} {cy - k:.2f} {cx + r:.2f} {cy:.2f} c f Q"
    )


def _text_op(font: str, size: float, x: float, y: float, text: str) -> str:
    return f"BT /{font} {size:g} Tf {x:.2f} {y:.2f} Td {_pdf_string(text)} Tj ET"


def write_pdf(path: Path, blocks: Sequence[Block], title: str, short_title: str) -> None:
    pages = _layout(blocks, short_title)
    objects: list[bytes] = []  # object n is objects[n - 1]

    def add(body: str | bytes) -> int:
        objects.append(body.encode("latin-1") if isinstance(body, str) else body)
        return len(objects)

    catalog = add("")  # filled in once the page tree number is known
    pages_obj = add("")
    font_regular = add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    font_bold = add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>")
    stamp = FIXED_TIME.strftime("D:%Y%m%d%H%M%SZ")
    info = add(
        f"<< /Title {_pdf_string(title)} /Author {_pdf_string(AUTHOR)} "
        f"/Creator (Enclave demo corpus generator) /Producer (Enclave demo corpus generator) "
        f"/CreationDate ({stamp}) /ModDate ({stamp}) >>"
    )
    page_ids = []
    for ops in pages:
        stream = "\n".join(ops).encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        page_ids.append(
            add(
                f"<< /Type /Page /Parent {pages_obj} 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] "
                f"/Resources << /Font << /F1 {font_regular} 0 R /F2 {font_bold} 0 R >> >> "
                f"/Contents {content} 0 R >>"
            )
        )
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {pages_obj} 0 R >>".encode("latin-1")
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects[pages_obj - 1] = f"<< /Type /Pages /Kids [{kids}] /Count {len(page_ids)} >>".encode("latin-1")

    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref_at = out.tell()
    out.write(b"xref\n0 %d\n" % (len(objects) + 1))
    out.write(b"0000000000 65535 f \n")
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, catalog, info, xref_at)
    )
    path.write_bytes(out.getvalue())


# --------------------------------------------------------------------------------------------
# Office formats. The libraries stamp "now" into docProps/core.xml and the zip entries, so every
# file is rewritten afterwards with fixed timestamps.
# --------------------------------------------------------------------------------------------


def normalise_zip(path: Path) -> None:
    with zipfile.ZipFile(path) as src:
        entries = [(info.filename, src.read(info.filename)) for info in src.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as dst:
        for name, data in entries:
            if name == "docProps/core.xml":
                text = data.decode("utf-8")
                text = re.sub(
                    r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
                    rf"\g<1>{FIXED_W3CDTF}\g<3>",
                    text,
                )
                data = text.encode("utf-8")
            info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            dst.writestr(info, data, compresslevel=9)
    path.write_bytes(buffer.getvalue())


def write_docx(path: Path, blocks: Sequence[Block], title: str) -> None:
    doc = Document()
    doc.styles["Normal"].font.name = "Calibri"
    doc.styles["Normal"].font.size = Pt(11)
    for kind, text in blocks:
        if kind == "title":
            doc.add_heading(text, level=0)
        elif kind == "meta":
            doc.add_paragraph(text).runs[0].italic = True
        elif kind == "h1":
            doc.add_heading(text, level=1)
        elif kind == "h2":
            doc.add_heading(text, level=2)
        elif kind == "p":
            doc.add_paragraph(text)
        elif kind == "bullet":
            doc.add_paragraph(text, style="List Bullet")
        elif kind == "table":
            rows = [row.split("|") for row in text.split("\n")]
            table = doc.add_table(rows=len(rows), cols=len(rows[0]))
            table.style = "Table Grid"
            for r, cells in enumerate(rows):
                for c, value in enumerate(cells):
                    cell = table.cell(r, c)
                    cell.text = value
                    if r == 0:
                        cell.paragraphs[0].runs[0].bold = True
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    props = doc.core_properties
    props.title = title
    props.author = AUTHOR
    props.last_modified_by = AUTHOR
    props.created = FIXED_TIME
    props.modified = FIXED_TIME
    props.last_printed = FIXED_TIME
    props.revision = 1
    doc.save(str(path))
    normalise_zip(path)


RESULTS_SLIDES: list[tuple[str, list[str]]] = [
    ("Q2 FY2026 at a glance", [
        "Quarter: 1 October to 31 December 2025",
        "Total revenue 56.3 million HVD, 2.6% above the Q2 budget of 54.9 million HVD",
        "Operating expenses (excluding depreciation) 38.2 million HVD against a budget of 38.9 million HVD",
        "Operating surplus for the quarter 9.8 million HVD (budget 7.7 million HVD)",
        "Container throughput 212,400 TEU, up 6.1% on Q2 FY2025",
        "Zero lost-time injuries for the second quarter in a row",
    ]),
    ("Operations", [
        "Containers: 212,400 TEU (Q2 FY2025: 200,200 TEU)",
        "Dry bulk: 2.9 million tonnes, flat on last year; grain exports offset lower cement imports",
        "Cruise: 38 ship calls and 71,300 passengers as the 2025/26 season opened",
        "Average berth waiting time at North Mole fell from 9.4 to 6.8 hours",
        "Pilotage: 1,986 acts of pilotage, no pilotage incidents",
    ]),
    ("Half year to 31 December 2025", [
        "H1 revenue 111.0 million HVD against an H1 budget of 108.6 million HVD",
        "H1 capital spend 31.4 million HVD of the FY2026 capital budget of 77.0 million HVD",
        "Cash and short-term deposits 64.2 million HVD at 31 December 2025",
        "Net debt 118.5 million HVD; interest cover 6.2 times (covenant minimum 3.0 times)",
    ]),
    ("Capital programme progress", [
        "North Mole Berth N7 extension: 42% complete; FY2026 spend to date 17.9 million HVD of 38.5 million HVD",
        "Kestrel Bay channel deepening: 80% complete; on track to finish in May 2026",
        "Saltmarket Wharf shore power: main contract awarded to Brightwater Electrical Services in November 2025",
        "Two replacement pilot launches: delivery delayed from March to May 2026 by the boatyard",
    ]),
    ("Risks and issues", [
        "Insurance renewal on 1 January 2026 came in 12% above the prior year (budget assumed 10%)",
        "Energy prices below budget; saving of about 0.6 million HVD expected for the full year",
        "One major liner service reviewing its Harbourview call from April 2026",
    ]),
    ("Full-year outlook", [
        "Revenue forecast raised to 221.5 million HVD (budget 218.0 million HVD)",
        "Operating surplus forecast 32.8 million HVD (budget 30.0 million HVD)",
        "Capital spend forecast 74.5 million HVD, below the 77.0 million HVD budget because of launch delays",
        "Next results presentation: Q3 FY2026, to the Board on 30 April 2026",
    ]),
]

RESULTS_REVENUE = [
    ("Revenue source", "Q2 FY2026 actual (HVD m)", "Q2 FY2026 budget (HVD m)"),
    ("Harbour dues", "15.8", "15.3"),
    ("Wharfage", "19.6", "18.9"),
    ("Pilotage and towage fees", "6.7", "6.4"),
    ("Property leases", "10.1", "10.0"),
    ("Cruise passenger levy", "3.0", "3.2"),
    ("Other income", "1.1", "1.1"),
    ("Total revenue", "56.3", "54.9"),
]


def write_results_pptx(path: Path) -> None:
    prs = Presentation()
    prs.slide_width = Inches(13.333)
    prs.slide_height = Inches(7.5)
    title_layout, content_layout, title_only_layout = prs.slide_layouts[0], prs.slide_layouts[1], prs.slide_layouts[5]

    slide = prs.slides.add_slide(title_layout)
    slide.shapes.title.text = "Quarterly Results: Q2 FY2026"
    slide.placeholders[1].text = (
        "Harbourview Port Authority - Finance and Procurement\n"
        "Presented to the Board by Rajiv Anand, Chief Financial Officer, 29 January 2026\n"
        "Confidential: Finance"
    )

    def bullets(title: str, items: list[str]) -> None:
        s = prs.slides.add_slide(content_layout)
        s.shapes.title.text = title
        body = s.placeholders[1]
        body.left, body.top, body.width, body.height = Inches(0.6), Inches(1.6), Inches(12.1), Inches(5.4)
        frame = body.text_frame
        frame.text = items[0]
        for item in items[1:]:
            frame.add_paragraph().text = item
        for paragraph in frame.paragraphs:
            paragraph.font.size = PptPt(20)

    bullets(*RESULTS_SLIDES[0])
    bullets(*RESULTS_SLIDES[1])

    s = prs.slides.add_slide(title_only_layout)
    s.shapes.title.text = "Revenue by source, Q2 FY2026"
    table = s.shapes.add_table(
        len(RESULTS_REVENUE), 3, Inches(1.5), Inches(1.8), Inches(10.3), Inches(4.4)
    ).table
    for r, row in enumerate(RESULTS_REVENUE):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    s.notes_slide.notes_text_frame.text = (
        "Wharfage is ahead of budget because of the extra Far East loop that started in October. "
        "The cruise levy is slightly behind because two early-season calls were cancelled for weather."
    )

    for title, items in RESULTS_SLIDES[2:]:
        bullets(title, items)

    # The default template is 4:3; stretch the inherited title and subtitle boxes to 16:9.
    stretch = 13.333 / 10
    for index, s in enumerate(prs.slides):
        for shape in s.placeholders:
            if shape.placeholder_format.idx == 0 or index == 0:
                shape.left, shape.width = int(shape.left * stretch), int(shape.width * stretch)

    props = prs.core_properties
    props.title = "Quarterly Results: Q2 FY2026"
    props.author = AUTHOR
    props.last_modified_by = AUTHOR
    props.created = FIXED_TIME
    props.modified = FIXED_TIME
    props.last_printed = FIXED_TIME
    props.revision = 1
    prs.save(str(path))
    normalise_zip(path)


# Figures in thousands of HVD: (line item, category, FY2025 actual, FY2026 budget).
BUDGET_LINES = [
    ("Harbour dues", "Revenue", 58420, 61300),
    ("Wharfage", "Revenue", 71950, 75200),
    ("Pilotage and towage fees", "Revenue", 24310, 25600),
    ("Property leases", "Revenue", 38760, 40150),
    ("Cruise passenger levy", "Revenue", 9840, 11400),
    ("Other income", "Revenue", 4120, 4350),
    ("Staff costs", "Expense", 72480, 76900),
    ("Maintenance dredging", "Expense", 14200, 18600),
    ("Infrastructure maintenance", "Expense", 19750, 20400),
    ("IT and digital services", "Expense", 8930, 9800),
    ("Insurance", "Expense", 6410, 7050),
    ("Energy and utilities", "Expense", 7880, 7300),
    ("Professional services", "Expense", 5260, 4900),
    ("Other operating expenses", "Expense", 9390, 9650),
    ("Depreciation", "Expense", 31600, 33400),
]

CAPITAL_LINES = [
    ("North Mole Berth N7 extension", "Infrastructure and Engineering", 38500, 112000, "December 2027"),
    ("Kestrel Bay channel deepening", "Marine Services", 12800, 21000, "May 2026"),
    ("Saltmarket Wharf shore power", "Infrastructure and Engineering", 9200, 16500, "March 2027"),
    ("Vessel traffic services system upgrade", "Marine Services", 4600, 7900, "June 2026"),
    ("Two replacement pilot launches", "Pilotage", 5400, 5400, "March 2026"),
    ("Minor works and asset renewals", "All divisions", 6500, 6500, "Ongoing"),
]

BUDGET_NOTES = [
    "FY2026 runs from 1 July 2025 to 30 June 2026. All figures are in thousands of HVD.",
    "The FY2026 budget was approved by the Board on 26 June 2025.",
    "Staff costs include a 3.2% general pay increase from 1 July 2025 and 9 new positions.",
    "Maintenance dredging rises by 4.4 million HVD because of the Kestrel Bay dredging campaign.",
    "Harbour dues and berth hire rates rose by 4.0% on 1 July 2025; wharfage rates by 3.5%.",
    "The target operating surplus is 30.0 million HVD, before the dividend to the Commonwealth.",
    "Budget owner: Rajiv Anand, Chief Financial Officer. Classification: Confidential, Finance.",
]


def write_budget_xlsx(path: Path) -> None:
    wb = Workbook()
    bold = Font(bold=True)

    ws = wb.active
    ws.title = "Operating budget"
    header = ["Line item", "Category", "FY2025 actual (HVD 000)", "FY2026 budget (HVD 000)",
              "Change (HVD 000)", "Change (%)"]
    ws.append(header)

    def row(item: str, category: str, actual: int, budget: int) -> list[object]:
        return [item, category, actual, budget, budget - actual, round(100.0 * (budget - actual) / actual, 1)]

    for item, category, actual, budget in BUDGET_LINES:
        ws.append(row(item, category, actual, budget))
    rev_a = sum(a for _, c, a, _ in BUDGET_LINES if c == "Revenue")
    rev_b = sum(b for _, c, _, b in BUDGET_LINES if c == "Revenue")
    exp_a = sum(a for _, c, a, _ in BUDGET_LINES if c == "Expense")
    exp_b = sum(b for _, c, _, b in BUDGET_LINES if c == "Expense")
    # Totals are stored as values, not formulas: openpyxl cannot compute formula results, and a
    # parser reading the file would see an empty cell.
    for item, actual, budget in (
        ("Total revenue", rev_a, rev_b),
        ("Total operating expenses", exp_a, exp_b),
        ("Operating surplus", rev_a - exp_a, rev_b - exp_b),
    ):
        ws.append(row(item, "Total", actual, budget))
        for cell in ws[ws.max_row]:
            cell.font = bold

    cap = wb.create_sheet("Capital programme")
    cap.append(["Project", "Division", "FY2026 budget (HVD 000)", "Total project cost (HVD 000)",
                "Expected completion"])
    for line in CAPITAL_LINES:
        cap.append(list(line))
    cap.append(["Total capital programme", "", sum(c[2] for c in CAPITAL_LINES), "", ""])
    for cell in cap[cap.max_row]:
        cell.font = bold

    notes = wb.create_sheet("Notes")
    notes.append(["Budget notes"])
    for note in BUDGET_NOTES:
        notes.append([note])

    for sheet in wb.worksheets:
        for cell in sheet[1]:
            cell.font = bold
        sheet.column_dimensions["A"].width = 42 if sheet.title != "Notes" else 100
        for col in "BCDEF":
            sheet.column_dimensions[col].width = 26

    props = wb.properties
    props.title = "FY2026 Budget Summary"
    props.creator = AUTHOR
    props.lastModifiedBy = AUTHOR
    props.created = FIXED_TIME
    props.modified = FIXED_TIME
    wb.save(str(path))
    normalise_zip(path)


def main() -> None:
    write_pdf(HERE / "public" / "visitor-and-safety-rules.pdf", VISITOR_SAFETY,
              "Visitor and Port Safety Rules", "Visitor and Port Safety Rules (SF-01)")
    write_docx(HERE / "public" / "travel-policy.docx", TRAVEL_POLICY, "Staff Travel and Expenses Policy")
    write_pdf(HERE / "finance" / "procurement-policy.pdf", PROCUREMENT,
              "Procurement and Purchasing Policy", "Procurement and Purchasing Policy (FP-03)")
    write_budget_xlsx(HERE / "finance" / "fy2026-budget-summary.xlsx")
    write_results_pptx(HERE / "finance" / "q2-fy2026-results.pptx")
    write_docx(HERE / "hr" / "parental-leave-policy.docx", PARENTAL_LEAVE, "Parental Leave Policy")
    write_pdf(HERE / "hr" / "disciplinary-procedure.pdf", DISCIPLINARY,
              "Disciplinary Procedure", "Disciplinary Procedure (HR-09)")


if __name__ == "__main__":
    main()

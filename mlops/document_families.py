"""Layout families of synthetic student-loan documents, with exact ground truth.

An extractor tuned on one layout fails on real documents, so the corpus varies what real
documents vary: the layout program (a family), label wordings, titles, value formats, fonts,
paper size, distractor values of the same type near their own labels, and scan degradation.
Every family draws its own spacing, order and positions; ``WORDINGS`` and ``TITLES`` can be
restricted per call so a model can be evaluated on wordings, titles and fonts it never saw.

Each loan document's row records the truth (``fields``, in the types of ``labels.jsonl``), the
exact printed string of each field (printed exactly once in the document, case-insensitively;
distractors are other values), the label wording used, and where each value is
(``field_pages``, ``field_boxes`` in PDF points from the top-left of its page, before any scan
rotation). The ``classic`` family is the original one-layout corpus, kept as it was.
"""

from __future__ import annotations

import calendar
import hashlib
import random
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from mlops.models import FIELD_NAMES, REQUIRED_FIELDS, UNKNOWN_DOCUMENT_TYPE
from mlops.sample_rendering import (
    KIND_EXTENSIONS,
    KIND_FORMATS,
    NO_BREAK,
    PAGE_SIZES,
    RENDER_KINDS,
    SCAN_DPIS,
    DrawOp,
    ScanQuality,
    encode_scan,
    outline,
    print_pdf,
    rasterize,
    scan,
    scan_quality,
    stack,
    text_pdf,
    text_width,
    wrap_text,
)

FAMILIES: tuple[str, ...] = (
    "classic",
    "label_list",
    "two_column",
    "boxed_form",
    "table",
    "letter",
    "multi_section",
)
KINDS = RENDER_KINDS
FONTS: tuple[str, ...] = ("Helvetica", "Times", "Courier")
PAGE_SIZE_NAMES = ("letter", "a4")
NON_LOAN_FAMILY = "non_loan"
MIN_PAGES = {"multi_section": 2}
TABULAR_FIELDS = ("disbursement_date", "principal", "interest_rate", "term_months", "monthly_payment")
CORE_FIELDS = ("borrower_name", "account_number", "servicer")

SERVICERS: dict[str, tuple[str, ...]] = {
    "Cobalt Student Loan Servicing": (
        "Cobalt Student Loan Svcg., LLC",
        "Cobalt SLS",
        "Cobalt Student Loans, LLC",
    ),
    "Harborlight Education Finance": (
        "Harborlight Ed. Finance, Inc.",
        "Harborlight Ed Finance",
        "Harborlight Education Fin. Corp.",
    ),
    "Meridian Ridge Loan Services": (
        "Meridian Ridge Loan Svcs., Inc.",
        "Meridian Ridge LS",
        "Meridian Ridge Servicing Co.",
    ),
    "Bluestem Student Lending": (
        "Bluestem Student Lending, LLC",
        "Bluestem Lending",
        "Bluestem Stud. Lending",
    ),
    "Tallowpine Education Loans": (
        "Tallowpine Ed. Loans",
        "Tallowpine Education Loans, Inc.",
        "Tallowpine Loans",
    ),
    "Quillfeather Student Finance": (
        "Quillfeather Student Fin., LLC",
        "Quillfeather Finance",
        "Quillfeather SF Corp.",
    ),
}
"""Canonical servicer name (the label truth) -> the other names a document may print."""
SERVICER_NAMES = tuple(SERVICERS)
SERVICER_CONTACTS = {
    "Cobalt Student Loan Servicing": ("P.O. Box 4410, Dayton, OH 45401", "1-800-555-0142"),
    "Harborlight Education Finance": ("P.O. Box 872, Portland, ME 04104", "1-800-555-0177"),
    "Meridian Ridge Loan Services": ("P.O. Box 21930, Boise, ID 83701", "1-800-555-0118"),
    "Bluestem Student Lending": ("P.O. Box 655, Wichita, KS 67201", "1-800-555-0163"),
    "Tallowpine Education Loans": ("P.O. Box 3307, Asheville, NC 28802", "1-800-555-0129"),
    "Quillfeather Student Finance": ("P.O. Box 1188, Rapid City, SD 57709", "1-800-555-0191"),
}
SCHOOLS = (
    "Northfield State University",
    "Larkspur Community College",
    "Eastbrook Institute of Technology",
    "Saint Brigid College",
    "Pine Hollow University",
    "Westmere School of Nursing",
)
FIRST_NAMES = (
    "Maria", "James", "Aisha", "Daniel", "Priya", "Marcus", "Elena", "Tomas", "Grace", "Kwame",
    "Sofia", "Ethan", "Mei", "Jordan", "Fatima", "Lucas", "Hannah", "Diego", "Nadia", "Owen",
    "Ingrid", "Rafael", "Chloe", "Samuel", "Yuki", "Andre", "Leila", "Victor", "Ruth", "Malik",
)  # fmt: skip
LAST_NAMES = (
    "Okafor", "Lindqvist", "Ramirez", "Thornbury", "Nakamura", "Petrovic", "Abernathy", "Castellano",
    "Whitfield", "Oyelaran", "Brennan", "Kowalczyk", "Delacroix", "Haverford", "Mbeki", "Sorensen",
    "Quintero", "Ashdown", "Varga", "Holloway", "Chandrasekar", "Fairbanks", "Moreau", "Eastwood",
    "Tanaka", "Gallagher", "Ivanova", "Pemberton", "Osei", "Rutherford",
)  # fmt: skip
STREETS = ("Elm Street", "Harbor View Road", "N. Lincoln Ave", "Cedar Lane", "Orchard Way", "W. 14th Street")
CITIES = (
    ("Springfield", "IL"), ("Fairview", "OR"), ("Madison", "WI"), ("Greenville", "SC"),
    ("Riverton", "WY"), ("Salem", "MA"), ("Franklin", "TN"), ("Clayton", "MO"),
)  # fmt: skip
MIDDLE_INITIALS = "ABCDEFGHJKLMNPRSTW"
ID_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"

WORDINGS: dict[str, tuple[str, ...]] = {
    "borrower_name": (
        "Borrower", "Borrower Name", "Student/Borrower", "Name of Borrower", "Holder", "Primary Borrower",
        "Borrower's Name", "Account Holder", "Name", "Student Borrower", "Borrower (Maker)", "Applicant",
    ),
    "account_number": (
        "Account Number", "Acct. No.", "Loan ID", "Account #", "Reference Account", "Account No.",
        "Loan Number", "Loan Account", "Acct #", "Account ID", "Loan Acct. No.",
    ),
    "servicer": (
        "Servicer", "Loan Servicer", "Serviced by", "Lender/Servicer", "Servicing Agent", "Your Servicer",
        "Servicer Name", "Loan Serviced By", "Lender", "Current Servicer", "Servicing Company",
    ),
    "principal": (
        "Principal Balance", "Loan Amount", "Amount Borrowed", "Original Principal", "Principal Amt.",
        "Amount Financed", "Principal", "Original Loan Amount", "Total Principal", "Principal Amount",
        "Loan Principal",
    ),
    "interest_rate": (
        "Interest Rate", "Fixed rate", "Rate", "Annual Interest Rate", "Current Interest Rate", "Int. Rate",
        "Fixed Interest Rate", "Interest Rate (Fixed)", "Rate of Interest", "Nominal Rate", "Applicable Rate",
    ),
    "disbursement_date": (
        "Disbursement Date", "Disbursed On", "Date Disbursed", "First Disbursement", "Disb. Date",
        "Date of Disbursement", "Funded On", "Loan Date", "Funding Date", "First Disbursement Date",
        "Date Funds Released",
    ),
    "term_months": (
        "Repayment Term", "Term", "Number of Payments", "Loan Term", "Repayment Period", "Term of Loan",
        "No. of Payments", "Months in Repayment", "Term Length", "Payment Term", "Repayment Schedule",
    ),
    "monthly_payment": (
        "Monthly Payment", "Installment Amount", "Regular Payment", "Payment Amount", "Monthly Installment",
        "Scheduled Payment", "Monthly Amount", "Regular Monthly Payment", "Installment",
        "Payment per Month", "Current Monthly Payment",
    ),
}  # fmt: skip
"""Field -> label wordings a document may print before (or above) the value."""

FIELD_LABELS = {
    "borrower_name": "Borrower Name",
    "account_number": "Account Number",
    "servicer": "Servicer",
    "principal": "Principal Balance",
    "interest_rate": "Interest Rate",
    "disbursement_date": "Disbursement Date",
    "term_months": "Repayment Term",
    "monthly_payment": "Monthly Payment",
}
"""The one wording per field of the classic family."""

TITLES: dict[str, tuple[str, ...]] = {
    "master_promissory_note": (
        "Master Promissory Note", "Promissory Note", "Student Loan Promissory Note",
        "Education Loan Agreement", "Loan Agreement and Promissory Note", "Credit Agreement - Student Loan",
    ),
    "disclosure_statement": (
        "Loan Disclosure Statement", "Final Disclosure", "Truth in Lending Disclosure",
        "Disclosure of Loan Terms", "Federal Truth-in-Lending Statement", "Approval Disclosure",
    ),
    "billing_statement": (
        "Monthly Billing Statement", "Statement of Account", "Your Monthly Student Loan Bill",
        "Account Statement", "Payment Notice", "Billing Summary",
    ),
    "deferment_forbearance_request": (
        "Deferment/Forbearance Request", "Forbearance Request Form", "Request for Deferment",
        "Payment Postponement Request", "Application for Forbearance", "General Forbearance Request",
    ),
    "idr_application": (
        "Income-Driven Repayment Plan Request", "IDR Application", "Income-Based Repayment Application",
        "Request for Income-Driven Repayment", "Repayment Plan Request - Income Based",
        "Annual Income Recertification",
    ),
    "enrollment_verification": (
        "Enrollment Verification", "Enrollment Status Certification", "In-School Deferment Verification",
        "Verification of Enrollment", "School Certification Form", "Student Status Confirmation",
    ),
}  # fmt: skip
"""Document type -> titles; the first is the classic family's."""

SUBTITLES: dict[str, tuple[str, ...]] = {
    "master_promissory_note": (
        "Private Education Loan - Borrower Agreement", "Read this note carefully before signing",
        "Terms of your education loan", "Borrower's promise to repay",
    ),
    "disclosure_statement": (
        "Truth in Lending Disclosure - Final Terms", "Important information about your loan",
        "Your final loan terms", "Keep this disclosure with your loan records",
    ),
    "billing_statement": (
        "Student Loan Account Summary", "Your account at a glance", "Payment information for this period",
        "Please review your statement",
    ),
    "deferment_forbearance_request": (
        "Request to Temporarily Postpone or Reduce Payments", "Complete all sections and sign",
        "Economic hardship and general forbearance", "Return this form to your servicer",
    ),
    "idr_application": (
        "Application and Annual Recertification", "Payment based on your income and family size",
        "Complete every section of this request", "Repayment plan selection",
    ),
    "enrollment_verification": (
        "Certification of Student Enrollment Status", "To be completed by the school registrar",
        "Student enrollment report", "In-school status for loan deferment",
    ),
}  # fmt: skip

# Body text per document type ("continuation" fills later pages). An unindented line names the
# type, "  Heading: text" starts a section and deeper-indented lines continue its text.
_SECTION_TEXT = """
master_promissory_note
  Promise to Pay: I promise to pay to the order of the lender the principal amount shown above,
    together with interest at the stated interest rate and any charges due under this promissory note,
    until the loan is paid in full.
  Borrower's Certification: By signing this Master Promissory Note, I certify that the information I
    have provided is true and complete and that I will use the loan proceeds only for educational expenses.
  Governing Law: This promissory note is governed by federal law and, where not preempted, by the laws
    of the state in which the lender is located.
disclosure_statement
  Truth in Lending: This disclosure statement describes the final terms of your loan. The annual
    percentage rate is the cost of your credit as a yearly rate; the finance charge is the dollar amount
    the credit will cost you.
  Itemization of Amount Financed: An itemization of the amount financed, including any origination fee,
    is available on request.
  Prepayment: You may prepay all or part of your loan at any time without penalty. Total of payments
    assumes every payment is made on time.
billing_statement
  Payment Information: The amount due includes principal and interest for the current billing period.
    Please remit payment by the payment due date to avoid a late fee.
  Past Due Amounts: If a past due amount is shown, pay it immediately. Late payments may be reported to
    consumer reporting agencies.
  Payment Coupon: Detach and return the payment coupon with your check or money order. Write your
    account number on your payment.
deferment_forbearance_request
  Request: I request a temporary suspension of my monthly payments during the deferment or forbearance
    period shown above.
  Interest Accrual: I understand that interest may continue to accrue during forbearance and that unpaid
    interest may be capitalized at the end of the forbearance period.
  Supporting Documentation: Proof of economic hardship, unemployment or in-school enrollment must be
    attached to this request to establish deferment eligibility.
idr_application
  Purpose: Use this form to apply for an income-driven repayment plan or to recertify your income and
    family size.
  Payment Calculation: Your monthly payment amount is based on your adjusted gross income, your family
    size and the poverty guideline for your state of residence.
  Annual Recertification: You must recertify your income and family size every year to remain on an
    income-driven repayment plan.
enrollment_verification
  Registrar Certification: The registrar certifies that the student named above is enrolled at the
    institution for the academic term shown.
  Use of This Information: Enrollment status is reported to the loan servicer to determine in-school
    deferment eligibility and the start of the grace period.
  Changes in Enrollment: The institution will notify the servicer if the student withdraws, graduates or
    drops below half-time enrollment.
continuation
  Late Charges: If any part of a payment is not received within 15 days after it is due, a late charge
    of up to 6 percent of the unpaid amount may be assessed.
  Credit Reporting: Information about your account, including late payments and defaults, may be
    reported to one or more consumer reporting agencies.
  Privacy Notice: We collect and use your personal information only to service your loan, as described
    in our privacy policy.
  Electronic Communications: You may choose to receive notices, statements and disclosures
    electronically by updating the preferences for your online account.
  Servicemembers: If you are on active military duty, you may be eligible for an interest rate reduction
    and other benefits under federal law.
  Definitions: Capitalization means adding unpaid interest to the principal balance. Grace period means
    the time before repayment begins after you leave school.
  Your Rights: You have the right to request a copy of this document and a payoff statement at any time
    at no cost.
"""


def _parse_sections(text: str) -> dict[str, tuple[tuple[str, str], ...]]:
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for line in text.strip().splitlines():
        if not line.startswith(" "):
            current = sections.setdefault(line.strip(), [])
        elif not line.startswith("    "):
            heading, body = line.strip().split(": ", 1)
            current.append([heading, body])
        else:
            current[-1][1] += " " + line.strip()
    return {key: tuple((heading, body) for heading, body in value) for key, value in sections.items()}


SECTIONS = _parse_sections(_SECTION_TEXT)
CONTINUATION_SECTIONS = SECTIONS.pop("continuation")
GENERIC_SECTIONS = tuple(
    section
    for section in CONTINUATION_SECTIONS
    if section[0] in ("Credit Reporting", "Electronic Communications", "Your Rights")
)
NOTICES = (
    "IMPORTANT: Keep your contact information up to date so you do not miss notices about your loan.",
    (
        "NOTICE: Enroll in automatic payments and you may qualify for a 0.25 percentage point interest rate "
        "reduction."
    ),
    "REMINDER: You can review your payment history, tax forms and correspondence online at any time.",
    "ATTENTION: Never share your account password. We will never ask for it by phone or email.",
)
BOILERPLATE = (
    "Please keep a copy of this document for your records.",
    "If you have questions about your account, call {servicer} at {phone}, Monday through Friday.",
    "Send correspondence to {servicer}, {address}.",
)

LETTER_SENTENCES: tuple[tuple[tuple[str, ...], str, str | None], ...] = (
    (("principal", "disbursement_date", "interest_rate"),
     ("This letter confirms your loan of {principal} disbursed on {disbursement_date} at a fixed rate of "
     "{interest_rate}."), None),
    (("principal", "disbursement_date"), "We disbursed {principal} to your school on {disbursement_date}.", None),
    (("principal",), "The original principal amount of your loan is {principal}.", None),
    (("principal",), "Our records show that you borrowed {principal}.", None),
    (("principal",), "Your outstanding principal balance is {principal}.", None),
    (("interest_rate",), "Interest accrues at a fixed annual rate of {interest_rate}.", None),
    (("interest_rate",), "The interest rate on this loan is {interest_rate}, fixed for the life of the loan.",
     None),
    (("interest_rate",), "Your loan carries an interest rate of {interest_rate}.", None),
    (("disbursement_date",), "The loan was first disbursed on {disbursement_date}.", None),
    (("disbursement_date",), "Funds were released to your school on {disbursement_date}.", None),
    (("disbursement_date",), "Your disbursement date was {disbursement_date}.", None),
    (("term_months", "monthly_payment"), "You will repay the loan in {term_months} of {monthly_payment}.",
     "count"),
    (("term_months",), "Your repayment schedule consists of {term_months}.", "count"),
    (("term_months",), "Your repayment term is {term_months}.", "span"),
    (("term_months",), "The loan will be repaid over {term_months}.", "span"),
    (("monthly_payment",), "Your regular monthly payment is {monthly_payment}.", None),
    (("monthly_payment",), "Each installment of {monthly_payment} is due on the same day every month.", None),
    (("monthly_payment",), "Beginning next month, please pay {monthly_payment} each month.", None),
    (("servicer",), "{servicer} services this loan on behalf of the lender.", None),
    (("servicer",), "Your loan is serviced by {servicer}.", None),
    (("servicer",), "Please direct all questions about this loan to {servicer}.", None),
)  # fmt: skip
"""(fields, sentence, term style it needs) for letters: "count" needs "120 monthly payments"."""

DISTRACTORS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "statement_date": (("Statement Date", "Date of Statement", "Statement Issued", "Notice Date"), "date_recent",
                       "This notice reflects your account as of {value}."),
    "due_date": (("Payment Due Date", "Due Date", "Please Pay By", "Next Payment Due"), "date_recent",
                 "Your next payment is due on {value}."),
    "signature_date": (("Date Signed", "Signature Date", "Signed On", "Date of Signature"), "date_near",
                       "We received your signed application on {value}."),
    "request_date": (("Requested Start Date", "Effective Date", "Begin Date", "Requested End Date"),
                     "date_recent", "Your request takes effect on {value}."),
    "enrollment_date": (("Enrollment Begin Date", "Term Start Date", "Anticipated Graduation Date",
                         "Last Date of Attendance"), "date_school",
                        "Your school reported a status change effective {value}."),
    "school": (("School", "School Name", "Institution", "College Attended"), "school",
               "Your school, {value}, reported your enrollment status to us."),
    "apr": (("Annual Percentage Rate (APR)", "APR", "Effective APR", "APR (estimated)"), "apr",
            "The annual percentage rate (APR), which includes fees, is {value}."),
    "fee_rate": (("Origination Fee", "Loan Fee Rate", "Origination Fee Rate", "Disbursement Fee"), "fee_rate",
                 "An origination fee of {value} was deducted from each disbursement."),
    "amount_due": (("Amount Due", "Total Amount Due", "Current Amount Due", "Minimum Amount Due"),
                   "money_due", "The amount now due is {value}."),
    "past_due": (("Past Due Amount", "Past Due", "Overdue Amount"), "money_small",
                 "Our records show a past due amount of {value}."),
    "late_fee": (("Late Fee", "Late Charge", "Late Payment Fee"), "money_fee",
                 "A late fee of {value} applies to payments received after the due date."),
    "interest_accrued": (("Accrued Interest", "Outstanding Interest", "Unpaid Interest", "Capitalized Interest"),
                         "money_interest", "Unpaid interest of {value} has accrued since your last statement."),
    "total_payments": (("Total of Payments", "Total Repayment Amount", "Finance Charge"), "money_total",
                       "If every payment is made on time, you will pay {value} in total."),
    "income": (("Adjusted Gross Income", "Annual Income", "Household Income"), "money_income",
               "Your reported adjusted gross income is {value}."),
    "cosigner": (("Co-Signer", "Cosigner Name", "Reference Name", "Authorized Third Party", "Parent/Guardian"),
                 "name", "A copy of this letter was sent to your co-signer, {value}."),
    "phone": (("Phone", "Daytime Phone", "Home Phone", "Contact Phone"), "phone",
              "You can reach our borrower support team at {value}."),
    "address": (("Mailing Address", "Home Address", "Address"), "address",
                "We will mail your documents to {value}."),
    "reference": (("Reference No.", "Confirmation No.", "Customer ID", "Invoice No."), "reference",
                  "Please quote confirmation number {value} when you contact us."),
    "grace_period": (("Grace Period", "Deferment Period", "Forbearance Period", "Requested Period"), "term_short",
                     "A grace period of {value} applies before repayment begins."),
}  # fmt: skip
"""Distractor -> (labels, value kind, letter sentence): values of a field's type that are not the field."""
TYPE_DISTRACTORS = {
    "master_promissory_note": ("school", "cosigner", "signature_date", "fee_rate", "apr", "reference", "address"),
    "disclosure_statement": ("apr", "fee_rate", "total_payments", "interest_accrued", "signature_date", "school"),
    "billing_statement": ("statement_date", "due_date", "amount_due", "past_due", "late_fee", "interest_accrued"),
    "deferment_forbearance_request": ("request_date", "grace_period", "signature_date", "amount_due", "phone",
                                      "cosigner"),
    "idr_application": ("income", "signature_date", "cosigner", "phone", "due_date", "amount_due", "address"),
    "enrollment_verification": ("school", "enrollment_date", "signature_date", "phone", "grace_period", "address"),
}  # fmt: skip
SHARED_DISTRACTORS = ("reference", "phone", "statement_date", "address")
NEAR = {
    "apr": "interest_rate", "fee_rate": "interest_rate", "amount_due": "monthly_payment",
    "past_due": "monthly_payment", "late_fee": "monthly_payment", "signature_date": "disbursement_date",
    "statement_date": "disbursement_date", "reference": "account_number", "cosigner": "borrower_name",
    "interest_accrued": "principal", "total_payments": "principal", "grace_period": "term_months",
    "school": "borrower_name", "address": "borrower_name",
}  # fmt: skip
"""Distractor -> the field it is usually printed beside."""

NON_LOAN_FORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[tuple[str, ...], str], ...],
                                tuple[tuple[str, str], ...]]] = {
    "rental_application": (
        ("Apartment Rental Application", "Residential Lease Application", "Rental Application Form",
         "Application to Rent"),
        ("Maple Court Apartments", "Riverbend Property Management", "Oakline Residential"),
        ((("Applicant Name", "Name of Applicant", "Applicant"), "name"),
         (("Date of Birth", "DOB"), "birth_date"), (("Current Address", "Present Address"), "address"),
         (("Phone", "Mobile Phone"), "phone"), (("Monthly Rent", "Rent Amount"), "money_rent"),
         (("Security Deposit", "Deposit"), "money_deposit"),
         (("Desired Move-in Date", "Move-in Date"), "date_recent"), (("Lease Term", "Term of Lease"), "term_lease"),
         (("Monthly Income", "Gross Monthly Income"), "money_income_month"),
         (("Application Fee", "Screening Fee"), "money_fee"), (("Emergency Contact", "Reference Name"), "name"),
         (("Unit No.", "Apartment Number"), "unit")),
        (("Authorization", ("I authorize the landlord to verify my employment, rental history and credit "
          "report for the purpose of evaluating this application.")),
         ("Fees", "The application fee is non-refundable. The security deposit is due at lease signing.")),
    ),
    "vehicle_registration": (
        ("Vehicle Registration Renewal", "Notice of Registration Renewal", "Motor Vehicle Registration Renewal",
         "Registration Renewal Application"),
        ("Department of Motor Vehicles", "State Motor Vehicle Division", "County Tag Office"),
        ((("Registered Owner", "Owner Name", "Owner"), "name"), (("Plate Number", "License Plate"), "plate"),
         (("VIN", "Vehicle ID Number"), "vin"), (("Make/Model", "Vehicle"), "vehicle"),
         (("Expiration Date", "Registration Expires"), "date_recent"),
         (("Renewal Fee", "Registration Fee"), "money_fee"), (("Late Penalty", "Penalty"), "money_fee"),
         (("Total Due", "Amount Due"), "money_rent"), (("Renew By", "Due Date"), "date_recent"),
         (("Mailing Address", "Address"), "address")),
        (("Renewal", ("Renew online, by mail or in person. Proof of insurance must be on file before the "
          "registration can be renewed.")),
         ("Emissions", "Vehicles registered in an emissions county must pass inspection within 90 days.")),
    ),
    "utility_bill": (
        ("Utility Bill", "Electric Service Statement", "Your Monthly Energy Bill", "Water & Sewer Bill"),
        ("Lakeside Power & Light", "Greenvale Water Authority", "Summit Gas and Electric"),
        ((("Customer Name", "Customer"), "name"), (("Account Number", "Account No."), "reference"),
         (("Service Address", "Premises"), "address"), (("Billing Date", "Bill Date"), "date_recent"),
         (("Previous Balance", "Last Bill"), "money_small"), (("Payment Received", "Payments"), "money_small"),
         (("Current Charges", "New Charges"), "money_small"), (("Amount Due", "Total Amount Due"), "money_small"),
         (("Due Date", "Pay By"), "date_recent"), (("Meter Number", "Meter No."), "unit"),
         (("Usage", "kWh Used"), "usage"), (("Rate", "Energy Rate"), "unit_rate")),
        (("Payment Options", ("Pay online, by phone or by mail. A late payment charge of 1.5 percent applies to "
          "balances not paid by the due date.")),
         ("Service", "Report outages and emergencies 24 hours a day at the number shown above.")),
    ),
    "gym_membership": (
        ("Gym Membership Agreement", "Fitness Center Membership Form", "Membership Application",
         "Health Club Enrollment"),
        ("Ironworks Fitness", "Peak Motion Health Club", "Riverside Athletic Center"),
        ((("Member Name", "Member"), "name"), (("Member ID", "Membership No."), "reference"),
         (("Start Date", "Membership Begins"), "date_recent"), (("Monthly Dues", "Monthly Fee"), "money_fee"),
         (("Enrollment Fee", "Joining Fee"), "money_fee"), (("Annual Fee", "Maintenance Fee"), "money_fee"),
         (("Agreement Term", "Term"), "term_lease"), (("Emergency Contact", "Contact Name"), "name"),
         (("Phone", "Cell Phone"), "phone"), (("Date Signed", "Signature Date"), "date_recent")),
        (("Cancellation", ("You may cancel this agreement within three business days of signing for a full "
          "refund. After that, 30 days written notice is required.")),
         ("Health", "Consult a physician before beginning any exercise program.")),
    ),
    "pay_stub": (
        ("Earnings Statement", "Pay Stub", "Payroll Advice", "Statement of Earnings"),
        ("Brightline Logistics Inc.", "Cedar Valley Hospital", "Northgate Retail Group"),
        ((("Employee Name", "Employee"), "name"), (("Employee ID", "Emp. No."), "reference"),
         (("Pay Date", "Check Date"), "date_recent"), (("Period Ending", "Pay Period End"), "date_recent"),
         (("Gross Pay", "Gross Earnings"), "money_rent"), (("Federal Tax", "Fed. Withholding"), "money_small"),
         (("Net Pay", "Net Amount"), "money_rent"), (("Hourly Rate", "Rate"), "hourly"),
         (("Hours", "Regular Hours"), "hours"), (("Address", "Employee Address"), "address")),
        (("Direct Deposit", ("Your net pay was deposited to the account on file. Keep this statement for your "
          "records.")),),
    ),
}  # fmt: skip
"""Non-loan form -> (titles, organisations, (labels, value kind) items, paragraphs)."""


@dataclass(frozen=True)
class Document:
    """One document: its truth (values), what is printed, its pages as draw ops and how it was made."""

    doc_type: str
    servicer: str | None
    values: dict[str, object]
    printed: dict[str, str]
    pages: tuple[tuple[DrawOp, ...], ...]
    anomalies: tuple[str, ...] = ()
    family: str = "classic"
    wordings: dict[str, str] = field(default_factory=dict)
    printed_labels: dict[str, str] = field(default_factory=dict)
    title: str = ""
    font: str = "Helvetica"
    page_size: str = "letter"
    layout: dict[str, object] = field(default_factory=dict)


# ---------------------------------------------------------------- public API


def family_document(
    family: str,
    doc_type: str,
    kind: str,
    seed: str | int,
    *,
    wordings: Mapping[str, Sequence[str]] | None = None,
    titles: Mapping[str, Sequence[str]] | None = None,
    fonts: Sequence[str] | None = None,
    sentences: Sequence[str] | None = None,
) -> tuple[bytes, dict]:
    """One labelled document file (deterministic per arguments) and its labels row.

    The document's content depends on (family, doc_type, seed, restrictions) only, so one seed
    rendered as several kinds is the same document printed and scanned differently.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    if doc_type not in REQUIRED_FIELDS:
        raise ValueError(f"unknown document type {doc_type!r}; choose one of {', '.join(REQUIRED_FIELDS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    rng = random.Random(f"{seed}:{family}:{doc_type}:{kind}:render")
    document = make_document(
        family,
        doc_type,
        f"{seed}:{family}:{doc_type}",
        page_count(kind, rng),
        wordings=wordings,
        titles=titles,
        fonts=fonts,
        sentences=sentences,
    )
    data, row = render(document, kind, rng)
    return data, _with_identity(row, f"{family}-{doc_type}-{_slug(seed)}{KIND_EXTENSIONS[kind]}", data)


def non_loan_document(kind: str, seed: str | int) -> tuple[bytes, dict]:
    """A form that is no student-loan document (rental application, utility bill...): doc_type
    "unknown" and no fields, laid out by the same families so layout alone gives nothing away."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    rng = random.Random(f"{seed}:non_loan:{kind}:render")
    document = _non_loan(f"{seed}:non_loan", page_count(kind, rng))
    data, row = render(document, kind, rng)
    return data, _with_identity(row, f"non-loan-{_slug(seed)}{KIND_EXTENSIONS[kind]}", data)


def make_document(
    family: str,
    doc_type: str,
    key: str,
    pages: int,
    anomaly: str | None = None,
    *,
    wordings: Mapping[str, Sequence[str]] | None = None,
    titles: Mapping[str, Sequence[str]] | None = None,
    fonts: Sequence[str] | None = None,
    sentences: Sequence[str] | None = None,
) -> Document:
    """The document of `family` for random key `key`, over at least `pages` pages.

    Pages after the ones holding fields come from their own random streams, so the same key with
    another page count gives the same first pages (what a re-scan of fewer or more pages shows).
    A draw whose values collide with other text on the page (a value printed twice, a distractor
    containing the truth) is redrawn.
    """
    if family == "classic":
        return _classic_document(doc_type, pages, anomaly, key)
    pages = max(pages, MIN_PAGES.get(family, 1))
    for attempt in range(50):
        rng = random.Random(f"{key}:{attempt}")
        draft = _loan_draft(doc_type, rng, anomaly, wordings, titles, fonts)
        if sentences:
            draft.sentences = [template for template in LETTER_SENTENCES if template[1] in sentences]
        if family != "letter":
            _summarise_in_prose(draft, random.Random(f"{key}:{attempt}:prose"))
            _date_the_form(draft, random.Random(f"{key}:{attempt}:dated"))
        field_pages = FAMILY_LAYOUTS[family](draft, rng)
        fits = _fits(field_pages, draft.style)
        ops = _assemble(draft, field_pages, pages, key)
        if fits and all(_occurrences(ops, printed) == 1 for printed in draft.printed.values()):
            return Document(
                doc_type=doc_type,
                servicer=draft.servicer,
                values={name: draft.values[name] for name in draft.printed},
                printed=draft.printed,
                pages=ops,
                anomalies=(anomaly,) if anomaly else (),
                family=family,
                wordings=draft.wordings,
                printed_labels=draft.labels,
                title=draft.title,
                font=draft.style.font,
                page_size=draft.style.page_size,
                layout=draft.layout,
            )
    raise RuntimeError(f"no collision-free {family} {doc_type} document for key {key!r}")


def render(
    document: Document,
    kind: str,
    rng: random.Random,
    printed_from_pdf: bool = False,
    *,
    dpi: int | None = None,
    quality: ScanQuality | None = None,
) -> tuple[bytes, dict]:
    """The document as a file of `kind`, and its row; scans at `dpi` and `quality` if given,
    else drawn from `rng`.

    Scans print the text PDF through PDFium, so they carry the document's typeface; the classic
    family keeps its Pillow-drawn scans unless it is a re-scan of a text PDF. Single-image kinds
    (PNG, JPEG) keep the pages that hold fields, stacked into one tall image when there are several.
    """
    pdf = text_pdf(document.pages, document.page_size, document.title, document.servicer or document.title)
    sheets = len(document.pages)
    if kind in ("png", "jpeg"):
        sheets = 1 + max(_locate(document)[0].values(), default=0)
    row = document_row(document, kind, 1 if kind in ("png", "jpeg") else sheets, sheets)
    if kind == "text_pdf":
        return pdf, row
    dpi = dpi or rng.choice(SCAN_DPIS)
    quality = quality or scan_quality(kind, rng)
    noise_rng = np.random.default_rng(rng.getrandbits(64))
    if document.family == "classic" and not printed_from_pdf:
        clean = [rasterize(ops, dpi) for ops in document.pages[:sheets]]
    else:
        clean = print_pdf(pdf, dpi)[:sheets]
    if kind in ("png", "jpeg") and len(clean) > 1:
        clean = [stack(clean)]
    images = [scan(page, quality, noise_rng) for page in clean]
    row.update(dpi=dpi, scan_quality=quality.label())
    return encode_scan(images, kind, dpi, quality, document.title), row


def empty_row() -> dict:
    """A row with every key and nothing known: the base of a bad input's row."""
    return {
        "doc_type": None, "servicer": None, "format": None, "has_text_layer": False, "pages": None,
        "sheets": None, "dpi": None, "scan_quality": None, "fields": {}, "printed": {},
        "expected_quarantine_reason": None, "duplicate_of": None, "near_duplicate_of": None, "anomalies": [],
        "family": None, "kind": None, "wordings": {}, "printed_labels": {}, "title": None, "font": None,
        "page_size": None, "layout": {}, "field_pages": {}, "field_boxes": {},
    }  # fmt: skip


def document_row(document: Document, kind: str, pages: int, sheets: int | None = None) -> dict:
    """The labels.jsonl row of a document rendered as `kind` (before dpi/scan quality are known)."""
    field_pages, field_boxes = _locate(document)
    return {
        **empty_row(),
        "doc_type": document.doc_type,
        "servicer": document.servicer,
        "format": KIND_FORMATS[kind].value,
        "has_text_layer": kind == "text_pdf",
        "pages": pages,
        "sheets": sheets or pages,
        "fields": {
            name: value.isoformat() if isinstance(value, date) else value
            for name, value in document.values.items()
        },
        "printed": dict(document.printed),
        "anomalies": list(document.anomalies),
        "family": document.family,
        "kind": kind,
        "wordings": dict(document.wordings),
        "printed_labels": dict(document.printed_labels),
        "title": document.title,
        "font": document.font,
        "page_size": document.page_size,
        "layout": dict(document.layout),
        "field_pages": field_pages,
        "field_boxes": field_boxes,
    }


def page_count(kind: str, rng: random.Random) -> int:
    """Pages a file of `kind` usually has: TIFFs are multi-page, PNG/JPEG one image."""
    if kind == "tiff":
        return rng.choice((2, 3))
    if kind in ("text_pdf", "image_pdf"):
        return rng.choice((1, 1, 2))
    return 1


def _with_identity(row: dict, filename: str, data: bytes) -> dict:
    return {**row, "filename": filename, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}


def _slug(seed: str | int) -> str:
    return "".join(char if char.isalnum() else "-" for char in str(seed))


def _occurrences(pages: tuple[tuple[DrawOp, ...], ...], text: str) -> int:
    needle = text.casefold()
    return sum(op.text.casefold().count(needle) for ops in pages for op in ops if op.kind == "text")


def _fits(pages: list[list[DrawOp]], style: Style) -> bool:
    """Whether every text op lies inside the page, above the footer."""
    return all(
        op.y <= style.bottom + 12
        and op.x >= 20
        and op.x + text_width(op.text, op.font, op.size, op.bold) <= style.width - 20
        for ops in pages
        for op in ops
        if op.kind == "text"
    )


def _locate(document: Document) -> tuple[dict[str, int], dict[str, list[float]]]:
    """Page and box [page, x0, top, x1, bottom] (points) of each printed value; where a value is
    printed more than once (classic), the occurrence beside its label wins."""
    pages: dict[str, int] = {}
    boxes: dict[str, list[float]] = {}
    for name, printed in document.printed.items():
        label = document.printed_labels.get(name, "")
        found = [
            (number, op)
            for number, ops in enumerate(document.pages)
            for op in ops
            if op.kind == "text" and printed.casefold() in op.text.casefold()
        ]
        if not found:
            continue
        number, op = next(((n, o) for n, o in found if label and label in o.text), found[0])
        start = op.text.casefold().index(printed.casefold())
        x0 = op.x + text_width(op.text[:start], op.font, op.size, op.bold)
        x1 = x0 + text_width(op.text[start : start + len(printed)], op.font, op.size, op.bold)
        pages[name] = number
        boxes[name] = [
            number,
            round(x0, 1),
            round(op.y - 0.75 * op.size, 1),
            round(x1, 1),
            round(op.y + 0.25 * op.size, 1),
        ]
    return pages, boxes


# ---------------------------------------------------------------- values and their printed forms


@dataclass(frozen=True)
class Formats:
    """How one document prints each kind of value (one style per document, as real issuers do)."""

    account: int = 1
    money: int = 0
    rate: int = 0
    term: int = 0
    date: int = 0
    upper_names: bool = False

    def money_text(self, amount: float) -> str:
        sign, value = ("-" if amount < 0 else ""), abs(amount)
        styles = (
            f"{sign}${value:,.2f}",
            f"{sign}{value:,.2f} USD",
            f"USD {sign}{value:,.2f}",
            f"{sign}${value:.2f}",
        )
        return styles[self.money]

    def rate_text(self, rate: float) -> str:
        return (f"{rate:.2f}%", f"{rate:g} %", f"{rate:.3f} percent")[self.rate]

    def term_text(self, months: int, style: int | None = None) -> str:
        style = self.term if style is None else style
        if style == 1 and months % 12 == 0:
            return f"{months // 12} years"
        return (f"{months} months", f"{months} months", f"{months} mo.", f"{months} monthly payments")[style]

    def date_text(self, day: date) -> str:
        month = calendar.month_name[day.month]
        short = month if len(month) <= 4 else ("Sept." if day.month == 9 else f"{month[:3]}.")
        return (
            f"{day.month:02d}/{day.day:02d}/{day.year}",
            f"{day.month:02d}-{day.day:02d}-{day.year % 100:02d}",
            f"{month} {day.day}, {day.year}",
            f"{short} {day.day}, {day.year}",
            f"{day.day} {calendar.month_abbr[day.month]} {day.year}",
            day.isoformat(),
        )[self.date]

    def name_text(self, name: str) -> str:
        return name.upper() if self.upper_names else name


ACCOUNT_STYLES = ("AB-123456789", "1234-5678-90", "9012345678", "L-2290-1187")


def _account(rng: random.Random, style: int) -> str:
    if style == 0:
        return f"{rng.choice(ID_LETTERS)}{rng.choice(ID_LETTERS)}-{rng.randrange(10**8, 10**9)}"
    if style == 1:
        return f"{rng.randrange(1000, 10000)}-{rng.randrange(0, 10000):04d}-{rng.randrange(0, 100):02d}"
    if style == 2:
        return str(rng.randrange(10**9, 10**10))
    return f"{rng.choice(ID_LETTERS)}-{rng.randrange(1000, 10000)}-{rng.randrange(1000, 10000)}"


def _person(rng: random.Random) -> str:
    middle = f" {rng.choice(MIDDLE_INITIALS)}." if rng.random() < 0.4 else ""
    return f"{rng.choice(FIRST_NAMES)}{middle} {rng.choice(LAST_NAMES)}"


def _draw_values(rng: random.Random, anomaly: str | None, account_style: int = 1) -> dict[str, object]:
    """Plausible loan terms (the payment amortises the principal), or one implausible value."""
    servicer = rng.choice(SERVICER_NAMES)
    principal = round(rng.uniform(3_500, 95_000), 2)
    rate = round(
        rng.choice((3.73, 4.45, 4.99, 5.28, 5.50, 6.54, 6.80, 7.05, 7.54, 8.25)) + rng.choice((0, 0.25)), 2
    )
    term = rng.choice((60, 120, 120, 180, 240, 300))
    disbursed = date(2014, 1, 1) + timedelta(days=rng.randrange(0, 365 * 10))
    middle = f" {rng.choice(MIDDLE_INITIALS)}." if rng.random() < 0.4 else ""
    values: dict[str, object] = {
        "borrower_name": f"{rng.choice(FIRST_NAMES)}{middle} {rng.choice(LAST_NAMES)}",
        "account_number": _account(rng, account_style),
        "servicer": servicer,
        "principal": principal,
        "interest_rate": rate,
        "disbursement_date": disbursed,
        "term_months": term,
        "monthly_payment": _amortized_payment(principal, rate, term),
    }
    if anomaly == "interest_rate":
        values["interest_rate"] = 48.0
    elif anomaly == "principal":
        values["principal"] = -round(rng.uniform(500, 9_000), 2)
    elif anomaly == "disbursement_date":
        values["disbursement_date"] = date(
            rng.randrange(2045, 2050), rng.randrange(1, 13), rng.randrange(1, 29)
        )
    return values


def _amortized_payment(principal: float, rate_percent: float, months: int) -> float:
    monthly_rate = rate_percent / 100 / 12
    return round(principal * monthly_rate / (1 - (1 + monthly_rate) ** -months), 2)


def _present_fields(doc_type: str, anomaly: str | None, rng: random.Random) -> list[str]:
    """The type's fields, one optional field left out of ~20% of documents (never the anomalous one)."""
    present = list(REQUIRED_FIELDS[doc_type])
    optional = [name for name in present if name not in CORE_FIELDS and name != anomaly]
    if optional and rng.random() < 0.2:
        present.remove(rng.choice(optional))
    return present


def _address(rng: random.Random) -> str:
    city, state = rng.choice(CITIES)
    return f"{rng.randrange(12, 9900)} {rng.choice(STREETS)}, {city}, {state} {rng.randrange(10000, 99999)}"


def _money_value(low: float, high: float) -> Callable[[random.Random, dict, Formats], str]:
    return lambda rng, values, fmt: fmt.money_text(round(rng.uniform(low, high), 2))


def _disbursed(values: dict) -> date:
    return values["disbursement_date"]  # type: ignore[return-value]


VALUE_MAKERS: dict[str, Callable[[random.Random, dict, Formats], str]] = {
    "date_recent": lambda rng, v, fmt: fmt.date_text(date(2023, 1, 1) + timedelta(days=rng.randrange(700))),
    "date_near": lambda rng, v, fmt: fmt.date_text(_disbursed(v) - timedelta(days=rng.randrange(3, 45))),
    "date_school": lambda rng, v, fmt: fmt.date_text(_disbursed(v) + timedelta(days=rng.randrange(20, 900))),
    "birth_date": lambda rng, v, fmt: fmt.date_text(date(1960, 1, 1) + timedelta(days=rng.randrange(15000))),
    "school": lambda rng, v, fmt: rng.choice(SCHOOLS),
    "apr": lambda rng, v, fmt: fmt.rate_text(round(float(v["interest_rate"]) + rng.choice((0.06, 0.11, 0.18, 0.37)), 2)),
    "fee_rate": lambda rng, v, fmt: fmt.rate_text(rng.choice((1.057, 1.059, 4.228, 4.236, 2.5, 3.0))),
    "money_due": lambda rng, v, fmt: fmt.money_text(round(float(v["monthly_payment"]) + rng.uniform(15, 400), 2)),
    "money_small": _money_value(25, 400),
    "money_fee": _money_value(9, 60),
    "money_interest": lambda rng, v, fmt: fmt.money_text(round(abs(float(v["principal"])) * rng.uniform(0.004, 0.05), 2)),
    "money_total": lambda rng, v, fmt: fmt.money_text(round(float(v["monthly_payment"]) * int(v["term_months"]), 2)),
    "money_income": _money_value(18_000, 95_000),
    "money_rent": _money_value(650, 3_400),
    "money_deposit": _money_value(500, 2_500),
    "money_income_month": _money_value(2_100, 9_800),
    "name": lambda rng, v, fmt: fmt.name_text(_person(rng)),
    "phone": lambda rng, v, fmt: f"({rng.randrange(201, 990)}) 555-{rng.randrange(100, 10000):04d}",
    "address": lambda rng, v, fmt: _address(rng),
    "reference": lambda rng, v, fmt: _account(rng, fmt.account),
    "term_short": lambda rng, v, fmt: fmt.term_text(rng.choice((6, 9, 12, 18, 36)), 0),
    "term_lease": lambda rng, v, fmt: fmt.term_text(rng.choice((6, 12, 12, 24)), 0),
    "unit": lambda rng, v, fmt: f"{rng.choice(ID_LETTERS)}{rng.randrange(100, 99999)}",
    "plate": lambda rng, v, fmt: f"{rng.randrange(1, 10)}{''.join(rng.choices(ID_LETTERS, k=3))}{rng.randrange(100, 1000)}",
    "vin": lambda rng, v, fmt: "".join(rng.choices(ID_LETTERS + "0123456789", k=17)),
    "vehicle": lambda rng, v, fmt: rng.choice(("Toyota Corolla", "Ford F-150", "Honda Civic", "Subaru Outback")),
    "usage": lambda rng, v, fmt: f"{rng.randrange(180, 1900)} kWh",
    "unit_rate": lambda rng, v, fmt: f"${rng.uniform(0.09, 0.31):.3f} per kWh",
    "hourly": lambda rng, v, fmt: f"${rng.uniform(14, 48):.2f}/hr",
    "hours": lambda rng, v, fmt: f"{rng.choice((32, 36, 40, 80))}.00",
}  # fmt: skip
"""Value kind -> a printed value of that kind for a document's values and formats."""


# ---------------------------------------------------------------- document drafts


@dataclass(frozen=True)
class Style:
    """Typography and page geometry drawn once per document."""

    font: str
    page_size: str
    margin: float
    size: float
    label_bold: bool
    body_size: float
    gap_factor: float
    case: str
    letterhead: str
    align: str
    title_size: float
    title_upper: bool
    bar_gray: int

    @property
    def width(self) -> float:
        return PAGE_SIZES[self.page_size][0]

    @property
    def height(self) -> float:
        return PAGE_SIZES[self.page_size][1]

    @property
    def right(self) -> float:
        return self.width - self.margin

    @property
    def usable(self) -> float:
        return self.width - 2 * self.margin

    @property
    def bottom(self) -> float:
        return self.height - 62

    @property
    def gap(self) -> float:
        return round(self.size * self.gap_factor, 1)

    def cased(self, label: str) -> str:
        return {"upper": label.upper(), "lower": label.lower()}.get(self.case, label)

    def text(
        self, x: float, y: float, text: str, *, size: float | None = None, bold: bool = False, gray: int = 0
    ) -> DrawOp:
        return DrawOp("text", x, y, text, size=size or self.size, bold=bold, gray=gray, font=self.font)

    def measure(self, text: str, size: float | None = None, bold: bool = False) -> float:
        return text_width(text, self.font, size or self.size, bold)


def _style(rng: random.Random, fonts: Sequence[str]) -> Style:
    return Style(
        font=rng.choice(list(fonts)),
        page_size=rng.choice(PAGE_SIZE_NAMES),
        margin=rng.choice((48.0, 56.0, 64.0, 72.0)),
        size=float(rng.choice((9, 10, 11, 12, 13))),
        label_bold=rng.random() < 0.4,
        body_size=float(rng.choice((9, 10, 11))),
        gap_factor=rng.choice((1.5, 1.7, 1.9)),
        case=rng.choices(("as_is", "upper", "lower"), weights=(6, 3, 1))[0],
        letterhead=rng.choice(("bar", "plain", "rule")),
        align=rng.choice(("left", "right", "center")),
        title_size=float(rng.choice((15, 17, 19, 21))),
        title_upper=rng.random() < 0.3,
        bar_gray=rng.choice((20, 45, 70, 95)),
    )


@dataclass(frozen=True)
class Item:
    """A label/value pair on the page: a field (key = field name) or a distractor."""

    key: str
    label: str
    value: str
    is_field: bool


@dataclass
class Draft:
    """Everything a family lays out for one document; the family only decides placement."""

    doc_type: str
    servicer: str | None
    brand: str
    address: str
    phone: str
    title: str
    subtitle: str
    style: Style
    fmt: Formats
    values: dict[str, object]
    printed: dict[str, str]
    wordings: dict[str, str]
    labels: dict[str, str]
    items: list[Item]
    distractors: list[Item]
    paragraphs: list[tuple[str, str]]
    notice: str | None
    page_marks: tuple[Item, Item]
    continuation: tuple[tuple[str, str], ...] = ()
    layout: dict[str, object] = field(default_factory=dict)
    mailing: tuple[str, ...] = ()  # the borrower's name and address under the header, unlabelled
    sentences: Sequence[tuple[tuple[str, ...], str, str | None]] = LETTER_SENTENCES  # prose templates
    dated: str | None = None  # the issue date, unlabelled, under the header

    @property
    def fields(self) -> list[Item]:
        return [item for item in self.items if item.is_field]


def _loan_draft(
    doc_type: str,
    rng: random.Random,
    anomaly: str | None,
    wordings: Mapping[str, Sequence[str]] | None,
    titles: Mapping[str, Sequence[str]] | None,
    fonts: Sequence[str] | None,
) -> Draft:
    fmt = Formats(
        account=rng.randrange(len(ACCOUNT_STYLES)),
        money=rng.randrange(4),
        rate=rng.randrange(3),
        term=rng.randrange(4),
        date=rng.randrange(6),
        upper_names=rng.random() < 0.3,
    )
    values = _draw_values(rng, anomaly, fmt.account)
    present = _present_fields(doc_type, anomaly, rng)
    style = _style(rng, fonts or FONTS)
    servicer = str(values["servicer"])
    printed_servicer = rng.choice((servicer, servicer.upper(), rng.choice(SERVICERS[servicer])))
    chosen = {name: rng.choice(list((wordings or {}).get(name) or WORDINGS[name])) for name in present}
    printed = {}
    for name in present:
        value = values[name]
        if name == "servicer":
            printed[name] = printed_servicer
        elif name == "borrower_name":
            printed[name] = fmt.name_text(str(value))
        elif name in ("principal", "monthly_payment"):
            printed[name] = fmt.money_text(float(value))
        elif name == "interest_rate":
            printed[name] = fmt.rate_text(float(value))
        elif name == "term_months":
            payments = "payment" in chosen[name].lower() and fmt.term == 1
            printed[name] = fmt.term_text(int(value), 3 if payments else None)
        elif name == "disbursement_date":
            printed[name] = fmt.date_text(value)  # type: ignore[arg-type]
        else:
            printed[name] = str(value)
    labels = {name: style.cased(wording) for name, wording in chosen.items()}
    distractors = [
        _distractor(key, rng, values, fmt, style) for key in _distractor_keys(doc_type, present, rng)
    ]
    fields = [Item(name, labels[name], printed[name], True) for name in present]
    mailing: tuple[str, ...] = ()
    if "borrower_name" in printed and rng.random() < 0.3:
        mailing = (printed["borrower_name"], *_address(rng).split(", ", 1))
        fields = [item for item in fields if item.key != "borrower_name"]
        chosen["borrower_name"] = "address block"
        del labels["borrower_name"]
    if rng.random() < 0.5:
        rng.shuffle(fields)
    items = list(fields)
    for item in distractors:
        keys = [entry.key for entry in items]
        if NEAR.get(item.key) in keys and rng.random() < 0.6:
            items.insert(keys.index(NEAR[item.key]) + 1, item)
        else:
            items.insert(rng.randrange(len(items) + 1), item)
    own = list(SECTIONS[doc_type])
    paragraphs = rng.sample(own, rng.randrange(1, len(own) + 1))
    if rng.random() < 0.4:
        other = rng.choice([t for t in SECTIONS if t != doc_type])
        paragraphs.insert(rng.randrange(len(paragraphs) + 1), rng.choice(SECTIONS[other]))
    address, phone = SERVICER_CONTACTS[servicer]
    # A third of letterheads print the servicer's full name, the only place some letters name it.
    # Chosen from the account number, not the rng, so every other draw of a seeded document stays.
    full_name_letterhead = hashlib.sha256(str(values["account_number"]).encode()).digest()[0] % 3 == 0
    return Draft(
        doc_type=doc_type,
        servicer=servicer,
        brand=servicer if full_name_letterhead else servicer.split()[0].upper(),
        address=address,
        phone=phone,
        title=rng.choice(list((titles or {}).get(doc_type) or TITLES[doc_type])),
        subtitle=rng.choice(SUBTITLES[doc_type]),
        style=style,
        fmt=fmt,
        values=values,
        printed=printed,
        wordings=chosen,
        labels=labels,
        items=items,
        distractors=distractors,
        paragraphs=paragraphs,
        notice=rng.choice(NOTICES) if rng.random() < 0.5 else None,
        page_marks=(
            _distractor("reference", rng, values, fmt, style),
            _distractor("statement_date", rng, values, fmt, style),
        ),
        mailing=mailing,
    )


def _distractor_keys(doc_type: str, present: list[str], rng: random.Random) -> list[str]:
    """3-6 distractors for the type, always with a date, an amount, a person or school, an
    account-shaped number and (beside an interest rate) another rate."""
    pool = list(dict.fromkeys(TYPE_DISTRACTORS[doc_type] + SHARED_DISTRACTORS))
    keys = rng.sample(pool, rng.randrange(3, 6))
    needed = [("date_",), ("money_",), ("name", "school"), ("reference",)]
    if "interest_rate" in present:
        needed.append(("apr", "fee_rate"))
    for kinds in needed:
        if not any(DISTRACTORS[key][1].startswith(kinds) for key in keys):
            of_kind = [key for key in DISTRACTORS if DISTRACTORS[key][1].startswith(kinds)]
            keys.append(rng.choice([key for key in of_kind if key in pool] or of_kind))
    return keys


def _distractor(key: str, rng: random.Random, values: dict, fmt: Formats, style: Style) -> Item:
    labels, kind, _ = DISTRACTORS[key]
    return Item(key, style.cased(rng.choice(labels)), VALUE_MAKERS[kind](rng, values, fmt), False)


# ---------------------------------------------------------------- blocks shared by the families

SEPARATORS = (":", " -", "", "gap", "stacked")


def _aligned_x(style: Style, width: float) -> float:
    return {"left": style.margin, "right": style.right - width, "center": (style.width - width) / 2}[
        style.align
    ]


def _header(d: Draft) -> tuple[list[DrawOp], float]:
    """Letterhead (brand bar, plain brand or brand over a rule), contact line, title, subtitle
    and the mailing address block, if any."""
    s = d.style
    ops: list[DrawOp] = []
    brand_size = 15.0 if s.letterhead == "bar" else 19.0
    brand_width = s.measure(d.brand, brand_size, True)
    if s.letterhead == "bar":
        width = max(brand_width + 40, s.usable * (0.45 + 0.1 * (s.bar_gray % 3)))
        x = _aligned_x(s, width)
        ops.append(DrawOp("rect", x, 34, gray=s.bar_gray, width=width, height=32))
        ops.append(s.text(x + 12, 55, d.brand, size=brand_size, bold=True, gray=255))
    else:
        ops.append(s.text(_aligned_x(s, brand_width), 56, d.brand, size=brand_size, bold=True))
        if s.letterhead == "rule":
            ops.append(DrawOp("rect", s.margin, 63, width=s.usable, height=1.2))
    contact = f"{d.address}  |  {d.phone}"
    ops.append(s.text(_aligned_x(s, s.measure(contact, 8.5)), 79, contact, size=8.5))
    title = d.title.upper() if s.title_upper else d.title
    size = min(s.title_size, s.title_size * s.usable / s.measure(title, s.title_size, True))
    title_x = s.margin if s.align == "right" else _aligned_x(s, s.measure(title, size, True))
    ops.append(s.text(title_x, 112, title, size=size, bold=True))
    subtitle_x = s.margin if s.align == "right" else _aligned_x(s, s.measure(d.subtitle, 11))
    ops.append(s.text(subtitle_x, 130, d.subtitle, size=11))
    ops.append(DrawOp("rect", s.margin, 138, width=s.usable, height=1.0))
    if d.dated:
        ops.append(s.text(s.right - s.measure(d.dated, 10), 152, d.dated, size=10))
    y = 160.0
    for line in d.mailing:
        ops.append(s.text(s.margin, y, line))
        y += s.size * 1.3
    return ops, y + (s.gap if d.mailing else 0.0)


def _page_marks(d: Draft, y: float) -> DrawOp:
    first, second = d.page_marks
    return d.style.text(
        d.style.margin, y, f"{first.label}: {first.value}     {second.label}: {second.value}", size=9
    )


def _continuation_header(d: Draft, page: int, heading: str | None = None) -> tuple[list[DrawOp], float]:
    """A later page's header: brand, the title (continued) and distractor marks (reference, date)."""
    s = d.style
    ops = [
        s.text(s.margin, 50, d.brand, size=12, bold=True),
        s.text(s.margin, 74, heading or f"{d.title} (continued)", size=13, bold=True),
        _page_marks(d, 92),
        DrawOp("rect", s.margin, 99, width=s.usable, height=0.8),
    ]
    return ops, 122.0


def _paragraphs(
    d: Draft, y: float, sections: Sequence[tuple[str, str]], notice: str | None = None
) -> list[DrawOp]:
    """Headed body paragraphs (and a boxed notice) until the page is full."""
    s = d.style
    ops: list[DrawOp] = []
    gap = s.body_size * 1.35
    if notice:
        lines = wrap_text(notice, s.usable - 24, s.font, s.body_size)
        height = gap * len(lines) + 14
        if y + height < s.bottom:
            ops += outline(s.margin, y - 4, s.usable, height, 1.5)
            ops += [
                s.text(s.margin + 12, y + 10 + gap * n, line, size=s.body_size)
                for n, line in enumerate(lines)
            ]
            y += height + 14
    for heading, body in sections:
        lines = wrap_text(body, s.usable, s.font, s.body_size)
        if y + 16 + gap * len(lines) > s.bottom:
            break
        ops.append(s.text(s.margin, y, heading, size=s.body_size + 1, bold=True))
        y += s.body_size + 6
        for line in lines:
            ops.append(s.text(s.margin, y, line.replace(NO_BREAK, " "), size=s.body_size))
            y += gap
        y += 10
    return ops


def _pair(s: Style, x: float, y: float, item: Item, separator: str, value_x: float | None) -> list[DrawOp]:
    """One label and its value on a baseline: "Label: value", "Label - value", "Label value",
    the value at a fixed column, or (stacked) the value on the line under its label."""
    if separator == "stacked":
        return [s.text(x, y, item.label, bold=s.label_bold), s.text(x, y + s.size * 1.25, item.value)]
    if separator == "gap" and value_x is not None:
        return [s.text(x, y, item.label, bold=s.label_bold), s.text(value_x, y, item.value)]
    label = f"{item.label}{separator}"
    if not s.label_bold:
        return [s.text(x, y, f"{label} {item.value}")]
    return [s.text(x, y, label, bold=True), s.text(x + s.measure(label + " ", bold=True), y, item.value)]


def _pair_width(s: Style, item: Item, separator: str) -> float:
    if separator == "stacked":
        return max(s.measure(item.label, bold=s.label_bold), s.measure(item.value))
    return s.measure(
        f"{item.label}{separator if separator != 'gap' else ''}  ", bold=s.label_bold
    ) + s.measure(item.value)


def _pair_height(s: Style, separator: str) -> float:
    return s.gap + (s.size * 1.25 if separator == "stacked" else 0.0)


def _list_block(d: Draft, items: Sequence[Item], y: float, separator: str) -> tuple[list[DrawOp], float]:
    s = d.style
    column = None
    if separator == "gap":
        widest = max(s.measure(item.label, bold=s.label_bold) for item in items)
        widest_value = max(s.measure(item.value) for item in items)
        column = s.margin + min(widest + 24, s.usable - widest_value)
        column = max(column, s.margin + widest + 8)
    ops: list[DrawOp] = []
    for item in items:
        ops += _pair(s, s.margin, y, item, separator, column)
        y += _pair_height(s, separator)
    return ops, y


def _two_column_block(
    d: Draft, items: Sequence[Item], y: float, separator: str
) -> tuple[list[DrawOp], float]:
    """Two pairs per line (left and right column); a pair too wide for its half gets a line of its own."""
    s = d.style
    half = s.usable / 2
    ops: list[DrawOp] = []
    row: list[Item] = []

    def flush(entries: list[Item], full: bool) -> None:
        nonlocal y
        for n, item in enumerate(entries):
            x = s.margin + n * (half + 8)
            width = s.usable if full else half - 8
            column = x + width - s.measure(item.value) if separator == "gap" else None
            ops.extend(_pair(s, x, y, item, separator, column))
        y += _pair_height(s, separator)

    for item in items:
        if _pair_width(s, item, separator) > half - 16:
            if row:
                flush(row, False)
                row = []
            flush([item], True)
            continue
        row.append(item)
        if len(row) == 2:
            flush(row, False)
            row = []
    if row:
        flush(row, False)
    return ops, y


def _box_block(
    d: Draft, items: Sequence[Item], y: float, columns: int, shaded: bool
) -> tuple[list[DrawOp], float]:
    """A grid of ruled boxes, each with a small label at its top and the value below it."""
    s = d.style
    label_size = max(6.5, s.size - 4)
    height = label_size + s.size + 16
    column_width = s.usable / columns
    rows: list[list[tuple[Item, int]]] = [[]]
    for item in items:
        needed = max(s.measure(item.label, label_size, True), s.measure(item.value)) + 16
        span = min(columns, int(needed // column_width) + 1)
        if sum(n for _, n in rows[-1]) + span > columns:
            rows.append([])
        rows[-1].append((item, span))
    ops: list[DrawOp] = []
    for row in rows:
        x = s.margin
        spare = columns - sum(n for _, n in row)
        for number, (item, span) in enumerate(row):
            width = column_width * (span + (spare if number == len(row) - 1 else 0))
            if shaded:
                ops.append(DrawOp("rect", x, y, gray=225, width=width, height=label_size + 6))
            ops += outline(x, y, width, height, 0.8)
            ops.append(s.text(x + 5, y + label_size + 2.5, item.label, size=label_size, bold=True))
            ops.append(s.text(x + 7, y + height - 7, item.value))
            x += width
        y += height
    return ops, y + 14


def _table_block(
    d: Draft, table: list[Item], rng: random.Random
) -> tuple[Callable[[float], tuple[list[DrawOp], float]], list[Item]]:
    """A ruled table: header row of the fields' labels, the loan's values, maybe a distractor row
    (a prior loan or a fee) with values of the same types. Returns a drawer and the fields that
    did not fit (they go back to the list)."""
    s = d.style
    row_kind = rng.choice(("prior", "fee", "prior", None))
    descriptions = {
        None: rng.choice(("Current loan", "This loan", "Loan 1 (this disbursement)", "Education loan")),
        "prior": rng.choice(("Prior loan (paid in full)", "Previous loan", "Loan 0 (closed)")),
        "fee": rng.choice(("Origination fee", "Loan fee", "Fee deducted")),
    }
    extra = rng.choice(
        (None, ("Status", ("Repayment", "Paid in full", "n/a")), ("Loan Type", ("Private", "Private", "Fee")))
    )
    other_rows = [row_kind] if row_kind else []
    columns: list[tuple[str, list[str]]] = [
        (
            s.cased(rng.choice(("Loan", "Description", "Item", "Type"))),
            [descriptions[k] for k in [None, *other_rows]],
        )
    ]
    for item in table:
        cells = [item.value] + [_table_cell(item.key, kind, rng, d) for kind in other_rows]
        columns.append((item.label, cells))
    if extra:
        header, cells = extra
        columns.append(
            (s.cased(header), [cells[0]] + [cells[1] if kind == "prior" else cells[2] for kind in other_rows])
        )
    header_size = s.size - 1
    width_of = [
        max([s.measure(h, header_size, True)] + [s.measure(c) for c in cells]) + 14 for h, cells in columns
    ]
    overflow: list[Item] = []
    while sum(width_of) > s.usable and len(columns) > 2:
        dropped = columns.pop()
        width_of.pop()
        overflow += [item for item in table if item.label == dropped[0]]
    spare = (s.usable - sum(width_of)) / len(width_of)
    truth_first = rng.random() < 0.6
    vertical = rng.random() < 0.5
    shaded = rng.random() < 0.5
    d.layout.update(table_columns=[header for header, _ in columns], distractor_row=row_kind)

    def draw(y: float) -> tuple[list[DrawOp], float]:
        ops = [DrawOp("rect", s.margin, y, width=s.usable, height=1.2)]
        row_height = s.size + 10
        if shaded:
            ops.append(DrawOp("rect", s.margin, y + 1.2, gray=220, width=s.usable, height=row_height))
        order = [0, 1] if other_rows and truth_first else ([1, 0] if other_rows else [0])
        x = s.margin
        xs = []
        for (header, _), width in zip(columns, width_of, strict=True):
            xs.append(x)
            ops.append(s.text(x + 5, y + row_height - 5, header, size=header_size, bold=True))
            x += width + spare
        y += row_height
        ops.append(DrawOp("rect", s.margin, y, width=s.usable, height=1.0))
        for row in order:
            for (_, cells), x in zip(columns, xs, strict=True):
                ops.append(s.text(x + 5, y + row_height - 4, cells[row]))
            y += row_height
            ops.append(DrawOp("rect", s.margin, y, gray=90, width=s.usable, height=0.6))
        if vertical:
            top = ops[0].y
            ops += [DrawOp("rect", x - 1, top, width=0.6, height=y - top) for x in xs[1:]]
        return ops, y + 18

    return draw, overflow


def _table_cell(key: str, row_kind: str, rng: random.Random, d: Draft) -> str:
    values, fmt = d.values, d.fmt
    if row_kind == "fee":
        fee_rate = rng.choice((1.057, 1.059, 4.228, 2.5))
        return {
            "principal": fmt.money_text(round(abs(float(values["principal"])) * fee_rate / 100, 2)),
            "disbursement_date": fmt.date_text(_disbursed(values) - timedelta(days=rng.randrange(2, 30))),
            "interest_rate": fmt.rate_text(fee_rate),
        }.get(key, "-")
    return {
        "principal": fmt.money_text(round(rng.uniform(2_000, 40_000), 2)),
        "disbursement_date": fmt.date_text(_disbursed(values) - timedelta(days=rng.randrange(200, 1400))),
        "interest_rate": fmt.rate_text(
            round(float(values["interest_rate"]) - rng.choice((0.5, 0.75, 1.25)), 2)
        ),
        "term_months": fmt.term_text(
            rng.choice([t for t in (60, 84, 120, 180) if t != values["term_months"]])
        ),
        "monthly_payment": fmt.money_text(round(rng.uniform(40, 600), 2)),
    }[key]


def _assemble(
    d: Draft, field_pages: list[list[DrawOp]], pages: int, key: str
) -> tuple[tuple[DrawOp, ...], ...]:
    """Field pages, then continuation pages (terms and conditions) from their own random streams,
    each page with its footer."""
    all_pages = list(field_pages)
    for number in range(len(field_pages), pages):
        rng = random.Random(f"{key}:page:{number}")
        ops, y = _continuation_header(d, number)
        if d.continuation:
            sections = rng.sample(d.continuation, min(4, len(d.continuation)))
        else:
            sections = rng.sample(CONTINUATION_SECTIONS, 4) + [
                rng.choice(SECTIONS[rng.choice(list(SECTIONS))])
            ]
        all_pages.append(ops + _paragraphs(d, y, sections))
    total = len(all_pages)
    s = d.style
    for number, ops in enumerate(all_pages):
        ops.append(
            s.text(s.margin, s.height - 36, "Synthetic sample document - not a real record.", size=7.5)
        )
        marker = f"Page {number + 1} of {total}"
        ops.append(s.text(s.right - s.measure(marker, 8.5), s.height - 36, marker, size=8.5))
    return tuple(tuple(ops) for ops in all_pages)


# ---------------------------------------------------------------- the families


def _label_list(d: Draft, rng: random.Random) -> list[list[DrawOp]]:
    """One label/value per line; the separator (colon, dash, wide gap or none) is per document."""
    ops, y = _header(d)
    separator = rng.choice(SEPARATORS)
    d.layout["separator"] = separator
    block, y = _list_block(d, d.items, y + 6, separator)
    return [ops + block + _paragraphs(d, y + 12, d.paragraphs, d.notice)]


def _two_column(d: Draft, rng: random.Random) -> list[list[DrawOp]]:
    """Two label/value pairs per line, left and right column."""
    ops, y = _header(d)
    separator = rng.choice(SEPARATORS)
    d.layout["separator"] = separator
    block, y = _two_column_block(d, d.items, y + 6, separator)
    return [ops + block + _paragraphs(d, y + 12, d.paragraphs, d.notice)]


def _boxed_form(d: Draft, rng: random.Random) -> list[list[DrawOp]]:
    """A form of drawn boxes: small label at the top of each box, the value inside below it."""
    ops, y = _header(d)
    columns = rng.choice((2, 3, 3))
    d.layout["columns"] = columns
    block, y = _box_block(d, d.items, y, columns, rng.random() < 0.4)
    return [ops + block + _paragraphs(d, y + 4, d.paragraphs, d.notice)]


def _table(d: Draft, rng: random.Random) -> list[list[DrawOp]]:
    """Money, date, rate and term fields in a ruled table (maybe beside a prior-loan or fee row),
    the other fields and distractors as a short list above it."""
    ops, y = _header(d)
    table = [item for item in d.fields if item.key in TABULAR_FIELDS]
    rng.shuffle(table)
    draw, overflow = _table_block(d, table, rng)
    listed = [item for item in d.items if item.key not in TABULAR_FIELDS or item in overflow]
    d.layout["in_table"] = [item.key for item in table if item not in overflow]
    separator = rng.choice(SEPARATORS)
    d.layout["separator"] = separator
    block, y = _list_block(d, listed, y + 6, separator)
    table_ops, y = draw(y + 4)
    return [ops + block + table_ops + _paragraphs(d, y + 8, d.paragraphs, d.notice)]


def _letter(d: Draft, rng: random.Random) -> list[list[DrawOp]]:
    """A letter: borrower in the address block, account on the RE line, the other values in prose
    sentences mixed with distractor sentences, the servicer in prose or the signature block."""
    s = d.style
    ops: list[DrawOp] = []
    brand_size = 18.0
    ops.append(
        s.text(_aligned_x(s, s.measure(d.brand, brand_size, True)), 54, d.brand, size=brand_size, bold=True)
    )
    contact = f"{d.address}  |  {d.phone}"
    ops.append(s.text(_aligned_x(s, s.measure(contact, 8.5)), 70, contact, size=8.5))
    title = d.title.upper() if s.title_upper else d.title
    ops.append(
        s.text(s.margin, 100, title, size=min(14.0, 14.0 * s.usable / s.measure(title, 14, True)), bold=True)
    )
    y = 126.0
    letter_date = VALUE_MAKERS["date_recent"](rng, d.values, d.fmt)
    ops.append(s.text(s.margin if rng.random() < 0.5 else s.right - s.measure(letter_date), y, letter_date))
    y += s.gap * 1.6
    names = d.printed.get("borrower_name") or d.fmt.name_text(_person(rng))
    street, city = _address(rng).split(", ", 1)
    for line in (names, street, city):
        ops.append(s.text(s.margin, y, line))
        y += s.size * 1.3
    y += s.gap
    if "account_number" in d.printed:
        re_line = f"RE: {d.labels['account_number']} {d.printed['account_number']}"
        ops.append(s.text(s.margin, y, re_line, bold=rng.random() < 0.5))
        y += s.gap * 1.4
    ops.append(
        s.text(s.margin, y, rng.choice(("Dear Borrower:", "Dear Customer,", f"Dear {names.split()[0]},")))
    )
    y += s.gap * 1.3

    signature = "servicer" in d.printed and rng.random() < 0.5
    remaining = [name for name in d.printed if name not in ("borrower_name", "account_number")]
    if signature:
        remaining.remove("servicer")
    sentences = [sentence for _, sentence in _prose(d, remaining, rng)]
    for item in d.distractors:
        sentences.insert(
            rng.randrange(len(sentences) + 1), DISTRACTORS[item.key][2].format(value=_unbroken(item.value))
        )
    opening = rng.choice(
        (
            "We are writing to confirm the details of your student loan.",
            "Thank you for choosing us to service your education loan.",
            "This letter summarizes the current terms of your loan account.",
        )
    )
    cut = rng.randrange(2, 5)
    gap = s.size * 1.35
    for paragraph in ([opening] + sentences[:cut], sentences[cut:]):
        for line in wrap_text(" ".join(paragraph), s.usable, s.font, s.size):
            ops.append(s.text(s.margin, y, line.replace(NO_BREAK, " ")))
            y += gap
        y += gap * 0.7
    closing = ["Sincerely,", "", "Borrower Services"]
    if signature:
        closing.append(d.printed["servicer"])
    closing.append(d.phone)
    for line in closing:
        if line:
            ops.append(s.text(s.margin, y, line))
        y += s.size * 1.3
    wordings = {name: "prose" for name in d.printed}
    if "borrower_name" in d.printed:
        wordings["borrower_name"] = "address block"
    if "account_number" in d.printed:
        wordings["account_number"] = d.wordings["account_number"]
    if signature:
        wordings["servicer"] = "signature block"
    d.wordings = wordings
    d.labels = {name: d.labels[name] for name in ("account_number",) if name in d.printed}
    d.layout["servicer_in"] = "signature" if signature else "prose"
    return [ops + _paragraphs(d, y + 6, d.paragraphs[:1])]


def _prose(
    d: Draft, names: Sequence[str], rng: random.Random, most: int | None = None
) -> list[tuple[tuple[str, ...], str]]:
    """(fields, sentence) that print the named fields (up to ``most`` sentences), from the draft's
    templates; values do not break across lines."""
    term_style = (
        "count" if d.fmt.term == 3 or d.printed.get("term_months", "").endswith("payments") else "span"
    )
    remaining, sentences = list(names), []
    templates = list(d.sentences)
    rng.shuffle(templates)
    for fields, template, needs in templates:
        if set(fields) <= set(remaining) and needs in (None, term_style) and len(sentences) != most:
            sentences.append((fields, template.format(**{name: _unbroken(d.printed[name]) for name in fields})))
            remaining = [name for name in remaining if name not in fields]
    return sentences


PROSE_SHARE = 0.35
"""Documents of the form families that state one or two of their fields in a sentence instead of
a labelled pair ("Your loan carries an interest rate of 6.8%."), as real statements do."""


def _summarise_in_prose(d: Draft, rng: random.Random) -> None:
    if rng.random() >= PROSE_SHARE:
        return
    listed = [item.key for item in d.fields if item.key not in ("borrower_name", "account_number")]
    sentences = _prose(d, listed, rng, most=1)
    if not sentences or len(sentences[0][0]) > len(d.fields) - 3:
        return
    moved, sentence = sentences[0]
    d.items = [item for item in d.items if item.key not in moved]
    for name in moved:
        d.wordings[name] = "prose"
        d.labels.pop(name, None)
    d.paragraphs.insert(0, (rng.choice(("Loan Summary", "About Your Loan", "Your Loan at a Glance")), sentence))


DATED_SHARE = 0.3
"""Form documents that print their issue date alone under the header, as letters do: a date
without a label is not the disbursement date."""


def _date_the_form(d: Draft, rng: random.Random) -> None:
    if rng.random() < DATED_SHARE:
        d.dated = VALUE_MAKERS["date_recent"](rng, d.values, d.fmt)


def _unbroken(value: str) -> str:
    return value.replace(" ", NO_BREAK)


def _multi_section(d: Draft, rng: random.Random) -> list[list[DrawOp]]:
    """A statement whose page 1 summarises a few fields and whose page 2 holds the others in a
    section of their own (list, two columns or boxes): fields really only on page 2."""
    fields = d.fields
    first_count = rng.randrange(1, min(3, len(fields) - 1) + 1)
    core_first = sorted(fields, key=lambda item: (item.key not in CORE_FIELDS, rng.random()))
    first = {item.key for item in core_first[:first_count]}
    distractors = [item for item in d.items if not item.is_field]
    rng.shuffle(distractors)
    distractors.sort(key=lambda item: not DISTRACTORS[item.key][1].startswith("date_"))
    split = rng.randrange(1, len(distractors))
    first_items = [item for item in d.items if item.key in first] + distractors[:split]
    second_items = [item for item in d.items if item.is_field and item.key not in first] + distractors[split:]
    rng.shuffle(first_items)
    rng.shuffle(second_items)

    ops, y = _header(d)
    s = d.style
    ops.append(
        s.text(
            s.margin,
            y + 4,
            s.cased(rng.choice(("Account Summary", "Summary", "At a Glance"))),
            size=s.size + 2,
            bold=True,
        )
    )
    separator = rng.choice(SEPARATORS)
    block, y = _list_block(d, first_items, y + 6 + s.gap, separator)
    page_one = ops + block + _paragraphs(d, y + 12, d.paragraphs, d.notice)

    heading = rng.choice(("Loan Details", "Section 2 - Loan Information", "Your Loan Terms", "Loan Detail"))
    ops, y = _continuation_header(d, 1, f"{d.title} - {heading}")
    section = rng.choice(("list", "two_column", "boxes"))
    d.layout.update(separator=separator, second_section=section)
    if section == "list":
        block, y = _list_block(d, second_items, y, separator)
    elif section == "two_column":
        block, y = _two_column_block(d, second_items, y, separator)
    else:
        block, y = _box_block(d, second_items, y - 8, 2, False)
    page_two = ops + block + _paragraphs(d, y + 12, rng.sample(CONTINUATION_SECTIONS, 3))
    return [page_one, page_two]


FAMILY_LAYOUTS: dict[str, Callable[[Draft, random.Random], list[list[DrawOp]]]] = {
    "label_list": _label_list,
    "two_column": _two_column,
    "boxed_form": _boxed_form,
    "table": _table,
    "letter": _letter,
    "multi_section": _multi_section,
}


# ---------------------------------------------------------------- non-loan forms


def _non_loan(key: str, pages: int) -> Document:
    """A form of another kind laid out by a loan family, labels and values of its own."""
    rng = random.Random(key)
    form = rng.choice(sorted(NON_LOAN_FORMS))
    titles, organisations, specs, paragraphs = NON_LOAN_FORMS[form]
    fmt = Formats(
        account=rng.randrange(4),
        money=rng.randrange(4),
        date=rng.randrange(6),
        upper_names=rng.random() < 0.3,
    )
    values = _draw_values(rng, None, fmt.account)
    style = _style(rng, FONTS)
    items = [
        Item(f"item_{n}", style.cased(rng.choice(labels)), VALUE_MAKERS[kind](rng, values, fmt), False)
        for n, (labels, kind) in enumerate(specs)
        if n == 0 or rng.random() < 0.85
    ]
    organisation = rng.choice(organisations)
    shared = rng.sample(GENERIC_SECTIONS, 2)
    draft = Draft(
        doc_type=UNKNOWN_DOCUMENT_TYPE,
        servicer=None,
        brand=organisation,
        address=_address(rng),
        phone=VALUE_MAKERS["phone"](rng, values, fmt),
        title=rng.choice(titles),
        subtitle=rng.choice(
            ("Please print clearly", "Keep a copy for your records", "Complete all sections")
        ),
        style=style,
        fmt=fmt,
        values=values,
        printed={},
        wordings={},
        labels={},
        items=items,
        distractors=items,
        paragraphs=list(paragraphs) + shared[: rng.randrange(3)],
        notice=None,
        continuation=tuple(paragraphs) + GENERIC_SECTIONS,
        page_marks=(Item("reference", "Reference No.", _account(rng, fmt.account), False), items[0]),
    )
    family = rng.choice(("label_list", "two_column", "boxed_form"))
    ops = _assemble(draft, FAMILY_LAYOUTS[family](draft, rng), pages, key)
    return Document(
        doc_type=UNKNOWN_DOCUMENT_TYPE,
        servicer=None,
        values={},
        printed={},
        pages=ops,
        family=NON_LOAN_FAMILY,
        title=draft.title,
        font=style.font,
        page_size=style.page_size,
        layout={**draft.layout, "form": form, "layout_family": family},
    )


# ---------------------------------------------------------------- the classic family


def _classic_document(doc_type: str, pages: int, anomaly: str | None, key: str) -> Document:
    """The original corpus layout: "Label: value" lines with one wording per field, Helvetica on
    Letter, every field on page 1; later pages are terms and conditions."""
    rng = random.Random(key)
    values = _draw_values(rng, anomaly)
    servicer = str(values["servicer"])
    address, phone = SERVICER_CONTACTS[servicer]
    present = _present_fields(doc_type, anomaly, rng)
    date_style = rng.randrange(3)
    fmt = Formats(date=(0, 2, 5)[date_style])
    printed = {name: _classic_value(name, values[name], fmt) for name in present}
    context = {
        "servicer": servicer,
        "address": address,
        "phone": phone,
        "school": rng.choice(SCHOOLS),
        "values": values,
        "rng": rng,
        "fmt": fmt,
        "style": _classic_style(doc_type, rng),
    }
    page_ops = tuple(_classic_page(doc_type, n, pages, printed, context) for n in range(pages))
    return Document(
        doc_type=doc_type,
        servicer=servicer,
        values={name: values[name] for name in present},
        printed=printed,
        pages=page_ops,
        anomalies=(anomaly,) if anomaly else (),
        family="classic",
        wordings={name: FIELD_LABELS[name] for name in present},
        printed_labels={name: FIELD_LABELS[name] for name in present},
        title=TITLES[doc_type][0],
    )


def _classic_value(name: str, value: object, fmt: Formats) -> str:
    if name in ("principal", "monthly_payment"):
        return fmt.money_text(float(value))  # type: ignore[arg-type]
    if name == "interest_rate":
        return f"{value:.2f}%"
    if name == "term_months":
        return f"{value} months"
    if name == "disbursement_date":
        return fmt.date_text(value)  # type: ignore[arg-type]
    return str(value)


def _classic_extra_lines(doc_type: str, context: dict) -> list[tuple[str, str]]:
    """Type-specific "Label: value" lines that are not ground-truth fields but help a classifier."""
    rng: random.Random = context["rng"]
    values = context["values"]
    fmt: Formats = context["fmt"]
    payment = float(values["monthly_payment"])
    principal = abs(float(values["principal"]))
    statement = date(2024, rng.randrange(1, 13), rng.randrange(1, 29))
    if doc_type == "master_promissory_note":
        return [("School Name", context["school"]), ("Loan Type", "Undergraduate Education Loan")]
    if doc_type == "disclosure_statement":
        total = payment * int(values["term_months"])
        apr = float(values["interest_rate"]) + rng.choice((0.06, 0.11, 0.18))
        return [
            ("Annual Percentage Rate (APR)", f"{apr:.2f}%"),
            ("Finance Charge", fmt.money_text(total - principal)),
            ("Total of Payments", fmt.money_text(total)),
        ]
    if doc_type == "billing_statement":
        return [
            ("Statement Date", fmt.date_text(statement)),
            ("Payment Due Date", fmt.date_text(statement + timedelta(days=25))),
            ("Amount Due", fmt.money_text(payment)),
            ("Past Due Amount", fmt.money_text(0.0)),
        ]
    if doc_type == "deferment_forbearance_request":
        kind = rng.choice(("Economic Hardship Deferment", "General Forbearance", "Unemployment Deferment"))
        return [("Request Type", kind), ("Requested Start Date", fmt.date_text(statement))]
    if doc_type == "idr_application":
        plan = rng.choice(
            ("Income-Based Repayment (IBR)", "Pay As You Earn (PAYE)", "Income-Contingent (ICR)")
        )
        return [
            ("Requested Plan", plan),
            ("Family Size", str(rng.randrange(1, 6))),
            ("Adjusted Gross Income", fmt.money_text(round(rng.uniform(18_000, 95_000), 2))),
        ]
    status = rng.choice(("Full-time", "Half-time", "Three-quarter time"))
    return [
        ("Institution", context["school"]),
        ("Enrollment Status", status),
        ("Academic Term", f"{rng.choice(('Fall', 'Spring'))} {statement.year}"),
    ]


CLASSIC_WIDTH_PT, CLASSIC_HEIGHT_PT = PAGE_SIZES["letter"]
CLASSIC_MARGIN_PT = 72.0
CLASSIC_BOTTOM_PT = 735.0


def _classic_style(doc_type: str, rng: random.Random) -> dict:
    """Per-document spacing and optional blocks, so unrelated documents from one servicer do not
    share a pixel layout (a re-scan keeps its original's style, and stays a near-duplicate)."""
    return {
        "field_gap": rng.choice((17.0, 19.0, 21.0)),
        "body_gap": rng.choice((14.0, 15.5)),
        "wrap": rng.choice((76, 84)),
        "notice": rng.choice((None, 0, 1, 2)),
        "notice_text": rng.choice(NOTICES),
        "extra_sections": rng.sample(CONTINUATION_SECTIONS, rng.randrange(0, 3)),
        "indent": rng.choice((0.0, 0.0, 18.0)),
        "dark_headings": doc_type in ("idr_application", "deferment_forbearance_request"),
    }


def _classic_paragraph(heading: str, body: str, y: float, style: dict) -> tuple[list[DrawOp], float]:
    """A headed paragraph; federal-style forms put the heading in white on a dark bar."""
    margin, width = CLASSIC_MARGIN_PT, CLASSIC_WIDTH_PT - 2 * CLASSIC_MARGIN_PT
    if style["dark_headings"]:
        ops = [
            DrawOp("rect", margin, y - 13, gray=45, width=width, height=18),
            DrawOp("text", margin + 6, y, heading, size=12, bold=True, gray=255),
        ]
        y += 21
    else:
        ops = [DrawOp("text", margin, y, heading, size=12, bold=True)]
        y += 17
    for line in textwrap.wrap(body, style["wrap"]):
        ops.append(DrawOp("text", margin + style["indent"], y, line, size=11))
        y += style["body_gap"]
    return ops, y + 10


def _classic_notice(text: str, y: float) -> tuple[list[DrawOp], float]:
    lines = textwrap.wrap(text, 70)
    height = 16.0 * len(lines) + 14
    ops = outline(CLASSIC_MARGIN_PT, y - 4, CLASSIC_WIDTH_PT - 2 * CLASSIC_MARGIN_PT, height, 2.5)
    ops += [
        DrawOp("text", CLASSIC_MARGIN_PT + 12, y + 14 + 16 * n, line, size=11) for n, line in enumerate(lines)
    ]
    return ops, y + height + 10


def _classic_letterhead(context: dict) -> list[DrawOp]:
    """The servicer's letterhead: each servicer has its own bar position, width and height."""
    number = SERVICER_NAMES.index(context["servicer"])
    width = (250.0, 468.0, 300.0, 360.0, 468.0, 280.0)[number]
    height = (34.0, 30.0, 46.0, 34.0, 40.0, 52.0)[number]
    x = CLASSIC_WIDTH_PT - CLASSIC_MARGIN_PT - width if number in (2, 5) else CLASSIC_MARGIN_PT
    return [
        DrawOp("rect", x, 36, gray=(60, 30, 90, 45, 75, 20)[number], width=width, height=height),
        DrawOp("text", x + 10, 36 + height / 2 + 5, context["servicer"], size=13, bold=True, gray=255),
        DrawOp("text", CLASSIC_MARGIN_PT, 100, f"{context['address']}  |  {context['phone']}", size=9),
    ]


def _classic_type_marks(doc_type: str, top: float, bottom: float, context: dict) -> list[DrawOp]:
    """Graphics around the field block that make each document type look different at a glance."""
    right = CLASSIC_WIDTH_PT - CLASSIC_MARGIN_PT
    if doc_type == "billing_statement":
        payment = context["fmt"].money_text(float(context["values"]["monthly_payment"]))
        return [
            DrawOp("rect", right - 150, top - 14, gray=70, width=150, height=56),
            DrawOp("text", right - 140, top + 8, "AMOUNT DUE", size=12, bold=True, gray=255),
            DrawOp("text", right - 140, top + 30, payment, size=13, bold=True, gray=255),
        ]
    if doc_type == "disclosure_statement":
        x = right - 130
        words = ("ANNUAL", "PERCENTAGE", "RATE", "The cost of your", "credit as a", "yearly rate.")
        return outline(x, top - 14, 130, bottom - top + 4, 3.0) + [
            DrawOp("text", x + 10, top + 8 + 18 * n, word, size=11, bold=n < 3)
            for n, word in enumerate(words)
        ]
    width = CLASSIC_WIDTH_PT - 2 * CLASSIC_MARGIN_PT
    if doc_type == "enrollment_verification":
        return outline(CLASSIC_MARGIN_PT - 8, top - 18, width + 16, bottom - top + 14, 2.5)
    if doc_type == "master_promissory_note":
        return outline(CLASSIC_MARGIN_PT - 8, top - 18, 300, bottom - top + 14, 1.0)
    return []


def _classic_page(doc_type: str, page: int, pages: int, printed: dict[str, str], context: dict) -> tuple:
    """Page `page` (0-based) of a classic document, as draw ops; page 1 holds every field.

    Optional blocks (notice box, general sections, boilerplate) are dropped when the page is full.
    """
    style = context["style"]
    margin = CLASSIC_MARGIN_PT
    ops = _classic_letterhead(context)
    title, subtitle = TITLES[doc_type][0], SUBTITLES[doc_type][0]
    y = 122.0
    if page == 0:
        ops.append(DrawOp("text", margin, y, title, size=20, bold=True))
        ops.append(DrawOp("text", margin, y + 22, subtitle, size=12))
        ops.append(DrawOp("rect", margin, y + 32, width=CLASSIC_WIDTH_PT - 2 * margin, height=1.5))
        y += 58
        lines = [(FIELD_LABELS[name], printed[name]) for name in FIELD_NAMES if name in printed]
        lines += _classic_extra_lines(doc_type, context)
        top = y
        for label, value in lines:
            ops.append(DrawOp("text", margin, y, f"{label}: {value}", size=12))
            y += style["field_gap"]
        ops += _classic_type_marks(doc_type, top, y, context)
        y += 12
        required = list(SECTIONS[doc_type])
        optional = list(style["extra_sections"])
    else:
        ops.append(
            DrawOp("text", margin, y, f"{title} - Terms and Conditions (continued)", size=14, bold=True)
        )
        if "account_number" in printed:
            ops.append(
                DrawOp("text", margin, y + 20, f"Account Number: {printed['account_number']}", size=11)
            )
        y += 50
        required = []
        optional = list(CONTINUATION_SECTIONS[(page - 1) * 3 : (page - 1) * 3 + 4])
    for n, (heading, body) in enumerate(required + optional):
        if page == 0 and n == style["notice"]:
            block, end = _classic_notice(style["notice_text"], y)
            if end < CLASSIC_BOTTOM_PT - 120:
                ops += block
                y = end
        block, end = _classic_paragraph(heading, body, y, style)
        if n >= len(required) and end > CLASSIC_BOTTOM_PT:
            break
        ops += block
        y = end
    if page == 0:
        for sentence in BOILERPLATE:
            lines = textwrap.wrap(sentence.format(**context), style["wrap"])
            if y + style["body_gap"] * len(lines) > CLASSIC_BOTTOM_PT:
                break
            for line in lines:
                ops.append(DrawOp("text", margin, y, line, size=11))
                y += style["body_gap"]
    ops.append(DrawOp("text", margin, 750, "Synthetic sample document - not a real loan record.", size=8))
    ops.append(DrawOp("text", CLASSIC_WIDTH_PT - margin - 50, 750, f"Page {page + 1} of {pages}", size=9))
    return tuple(ops)
